"""The warnings of tracing and loading that are known to be harmless here, silenced narrowly.

Each filter names the message, the category and, where Python attributes it, the module
that emits it, and holds only around the call that emits it; each says why it is harmless.
Every exported graph is then validated against torch on other shapes than the tracing
ones (batch 1 and 3, short and long texts, 1 and 7 labels; `validation.py`), which is
what would catch a trace that does not generalize. Anything else still prints.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

from torch.jit import TracerWarning

# (message regex, category, module regex or "") -- see the reasons beside each.
_TRACING: tuple[tuple[str, type[Warning], str], ...] = (
    # masking_utils: `if kv_length + kv_offset - attention_mask.shape[-1] > 0` pads the mask
    # for a key/value cache; an encoder without cache has kv_length == the mask's length for
    # every input, so the branch the trace records (not taken) is the one every input takes.
    # context_encoders: shape checks that raise ValueError on malformed input; the graph's
    # inputs have those shapes by construction.
    (
        r"Converting a tensor to a Python boolean might cause the trace to be incorrect",
        TracerWarning,
        r"(transformers\.masking_utils|gliner\.modeling\.context_encoders)$",
    ),
    # masking_utils: `torch.tensor(0.0, ...)`, the additive mask's value for kept positions,
    # is a constant for every input.
    (r"torch\.tensor results are registered as constants", TracerWarning, r"transformers\.masking_utils$"),
    # aten::index: negative indices would count from the end in torch but not in the
    # exported Gather. Every index here is non-negative: word positions come from
    # `torch.where(words_mask > 0)` and `words_mask - 1` there (gliner's
    # extract_*_word_embeddings), span / entity indices from the runtime's pre-processing,
    # padded with 0, pair indices clamped at 0.
    (r"Exporting aten::index operator of advanced indexing", UserWarning, ""),
    # gliner's LSTM runs without initial states (zeros); the exported graph builds them
    # from the input's batch size, which validation proves on batches of 1 and 3 (the
    # trace uses 2).
    (r"Exporting a model to ONNX with a batch_size other than 1", UserWarning, ""),
)
# Printed by torch's C++ side straight to the stderr file descriptor: the static shape
# annotations of gliner's LSTM packing ops are missing from the graph; ONNX Runtime
# computes shapes at run time, and validation compares every output's shape with torch's.
_TRACING_STDERR = (
    "The shape inference of prim::PackPadded type is missing",
    "The shape inference of prim::PadPacked type is missing",
)


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Around `torch.onnx.export`: drop the tracing warnings listed above."""
    with warnings.catch_warnings(), _filtered_stderr(_TRACING_STDERR):
        for message, category, module in _TRACING:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
        yield


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Around building or loading a gliner model: drop two notes about its embeddings.

    * gliner: "Resizing embeddings is not supported for bi-encoder models." A bi-encoder's
      text never holds the `<<ENT>>` / `<<SEP>>` prompt tokens (labels go through their own
      encoder), so its embeddings need no new rows; the runtime feeds no prompt tokens.
    * transformers: "The new embeddings will be initialized from a multivariate normal
      distribution ...": how the rows of gliner's added tokens start out; a checkpoint's
      own weights replace them on load, a demo's heads are untrained anyway.
    """
    drop = _DropMessage("The new embeddings will be initialized from a multivariate normal")
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"Resizing embeddings is not supported for bi-encoder", category=UserWarning
            )
            yield
    finally:
        logger.removeFilter(drop)


@contextlib.contextmanager
def quiet_quantization() -> Iterator[None]:
    """Around ONNX Runtime's `quantize_dynamic`: drop its advice "Please consider to run
    pre-processing before quantization" (symbolic shape inference and graph optimization
    first). The graphs are already optimized; the value types shape inference would find
    are given (`DefaultTensorType`), and the int8 copy's agreement with fp32 is measured."""
    drop = _DropMessage("Please consider to run pre-processing before quantization")
    logger = logging.getLogger()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


@contextlib.contextmanager
def _filtered_stderr(harmless: tuple[str, ...]) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file meanwhile, then replay every line but
    those containing one of `harmless` (in order, also when the body raises)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor: nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [
                line
                for line in sink.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not any(h in line for h in harmless)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
