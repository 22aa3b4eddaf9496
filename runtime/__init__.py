"""The torch-free runtime (numpy, onnxruntime and tokenizers only).

Stages, each a module of pure functions over plain arrays or frozen dataclasses:

1. `words`    split a text into words with character offsets
2. `labels`   normalise labels; build the uni-encoder prompt
3. `tokenize` subword-tokenize the words once per batch; build `words_mask`
4. `spans`    enumerate candidate spans
5. `session`  run the exported graphs with ONNX Runtime
6. `decode`   threshold scores into candidates; flat / nested / multi-label greedy selection
7. decoder archs: `generative` (span or label prefixes for the decoder, the pipeline),
   `generate` (greedy / sampling loop on the key/value cache), `beam` (beam search),
   `trie` (gen_constraints)

`model.GLiNER` composes them; this package never imports torch, transformers or gliner.
"""

from .model import GLiNER
from .options import InferenceParams, SessionOptions

__all__ = ["GLiNER", "InferenceParams", "SessionOptions"]
