"""The torch-free runtime (numpy, onnxruntime and tokenizers only).

Stages, each a module of pure functions over plain arrays or frozen dataclasses:

1. `words`    split a text into words with character offsets
2. `labels`   normalise labels; build the uni-encoder prompt
3. `tokenize` subword-tokenize the words once per batch; build `words_mask`
4. `spans`    enumerate candidate spans (`features` composes 1-4 per batch)
5. `runner`   the one graph runner: every graph runs through it (sessions in `session`:
              providers, placement, IO binding)
6. `entity_decoding`  threshold scores into candidates; flat / nested / multi-label greedy
              selection
7. `output`   word spans -> gliner's entity and relation dicts (the one place offsets are made)
   relex: `relations`; label-decoder archs: `label_generation` (spans -> decoder prefixes ->
   labels), `generation_loop` (greedy / sampling), `beam_search`, `trie`;
   long texts: `windows`, `planning`

One pipeline per graph layout composes them, with its own batching policy, from the
loaded-model context (`loaded.LoadedModel`: manifest, graph runner, tokenizers, label
store `labelstore`): `entities` (span and token models), `relex`, `label_decoder`; `pipelines`
registers them by layout. `model.GLiNER` is the facade: it checks arguments (`request`),
picks the pipeline once at load and adapts the typed results (`result`) to gliner's
conventions. This package never imports torch, transformers or gliner.
"""

from .model import GLiNER
from .options import InferenceParams, SessionOptions

__all__ = ["GLiNER", "InferenceParams", "SessionOptions"]
