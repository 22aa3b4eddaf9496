"""Shared fixtures: GLiNER checkpoints built offline with gliner itself, and their exports.

Each checkpoint goes the way a user's does: built with random heads (fixed seed,
scaled so scores spread over (0, 1)), saved with `save_pretrained`, reloaded with
`gliner.GLiNER.from_pretrained`, then exported from its directory.
"""

from __future__ import annotations

import functools
import gc
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=FutureWarning)

# Varied text: punctuation, hyphens, numbers, accents, CJK, emoji, several sentences.
TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris on 3 March 2021.",
    "Apple's CEO Tim Cook visited 東京タワー 😀 with José Álvarez, then flew to São Paulo.",
    "The e-mail from Acme-Corp reached Berlin at 9:45 a.m.; 3.14 isn't pi, said Dr. Smith.",
    "Marie Curie won the Nobel Prize twice. She was born in Warsaw! Her daughter Irène did too?",
    "北京大学 hosted the ACL 2024 workshop (co-chaired by Yann LeCun) — 👩‍🔬 scientists attended.",
    "x",
]
LABELS = ["person", "organization", "location", "date", "award"]
# Calibrated logit std of the random heads: scores spread over (0, 1).
LOGIT_STD = 2.0


@dataclass
class Checkpoint:
    name: str
    model_dir: Path
    export_dir: Path

    @property
    def torch_model(self) -> Any:
        """gliner.GLiNER loaded from `model_dir` (the same object while it is in use)."""
        return _torch_model(self.model_dir)


# The session's checkpoints outlive their test files; holding every one's torch model made the
# test process grow past 10 GB. The few used last stay loaded; another is reloaded from its
# directory, as it was built (saved, then loaded with from_pretrained).
@functools.lru_cache(maxsize=3)
def _torch_model(model_dir: Path) -> Any:
    from gliner import GLiNER

    return GLiNER.from_pretrained(str(model_dir), local_files_only=True).eval()


@pytest.fixture(scope="module", autouse=True)
def _give_memory_back() -> Iterator[None]:
    """After each test file: collect its models and sessions, and return freed heap to the OS
    (glibc keeps it otherwise, and the process's peak grows file after file)."""
    from gliner_onnx.export.memory import trim

    yield
    gc.collect()
    trim()


def _minilm() -> Path:
    from gliner_onnx.export.demo import minilm_dir

    return minilm_dir()


def _checkpoint(tmp: Path, name: str, build: Any) -> Checkpoint:
    from gliner_onnx.export import export_model

    model_dir = tmp / f"{name}-ckpt"
    build().save_pretrained(model_dir)
    export_dir = tmp / f"{name}-onnx"
    export_model(model_dir, export_dir, log=lambda _m: None)
    return Checkpoint(name, model_dir, export_dir)


def _reexport(tmp: Path, ckpt: Checkpoint, name: str, **export_kw: Any) -> Checkpoint:
    """The same checkpoint exported with other settings."""
    from gliner_onnx.export import export_model

    export_dir = tmp / f"{name}-onnx"
    export_model(ckpt.model_dir, export_dir, log=lambda _m: None, **export_kw)
    return Checkpoint(name, ckpt.model_dir, export_dir)


@pytest.fixture(scope="session")
def ckpt_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    yield root
    # The session's checkpoints and exports (about 1.6 GB): pytest's retention policy removes
    # only the per-test directories of passing tests, not these.
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_span_export(ckpt_root: Path) -> Path:
    """The trained uniencoder_span demo, exported as a user does: `gliner-export --arch
    uniencoder_span` (its entities are real ones, in several scripts)."""
    import subprocess

    out = ckpt_root / "demo-uniencoder-span"
    cmd = [sys.executable, "-m", "gliner_onnx.export.cli", "--arch", "uniencoder_span", "--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def uni_minilm(ckpt_root: Path) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner

    return _checkpoint(
        ckpt_root, "uni-minilm", lambda: build_gliner(_minilm(), seed=1, logit_scale=LOGIT_STD)
    )


@pytest.fixture(scope="session")
def uni_deberta(ckpt_root: Path) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner

    from .backbones import make_tiny_deberta_v3

    backbone = make_tiny_deberta_v3(ckpt_root / "tiny-deberta-v3")
    return _checkpoint(
        ckpt_root,
        "uni-deberta",
        lambda: build_gliner(backbone, seed=2, max_width=8, hidden_size=48, logit_scale=LOGIT_STD),
    )


@pytest.fixture(scope="session")
def uni_deberta_generic(ckpt_root: Path, uni_deberta: Checkpoint) -> Checkpoint:
    """uni_deberta without export-time optimization: the generic span head."""
    return _reexport(ckpt_root, uni_deberta, "uni-deberta-generic", optimize=False)


@pytest.fixture(scope="session")
def uni_modernbert(ckpt_root: Path) -> Checkpoint:
    """A span uni-encoder on a tiny ModernBERT (alternating global and sliding-window layers)."""
    from gliner_onnx.export.demo.backbones import build_gliner

    from .backbones import make_tiny_modernbert

    backbone = make_tiny_modernbert(ckpt_root / "tiny-modernbert")
    return _checkpoint(
        ckpt_root,
        "uni-modernbert",
        lambda: build_gliner(backbone, seed=5, max_width=8, hidden_size=48, logit_scale=LOGIT_STD),
    )


@pytest.fixture(scope="session")
def bi_modernbert_bert(ckpt_root: Path) -> Checkpoint:
    """knowledgator's modern bi-encoders' layout: a ModernBERT text encoder, a BERT label encoder."""
    from gliner_onnx.export.demo.backbones import build_gliner

    from .backbones import make_tiny_bert, make_tiny_modernbert

    text_encoder = make_tiny_modernbert(ckpt_root / "tiny-modernbert-b", seed=1)
    labels_encoder = make_tiny_bert(ckpt_root / "tiny-bert-m", seed=2)
    return _checkpoint(
        ckpt_root,
        "bi-modernbert-bert",
        lambda: build_gliner(
            text_encoder, labels_encoder_dir=labels_encoder, seed=6, max_width=8, logit_scale=LOGIT_STD
        ),
    )


@pytest.fixture(scope="session")
def bi_minilm_bert(ckpt_root: Path) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner

    from .backbones import make_tiny_bert

    labels_encoder = make_tiny_bert(ckpt_root / "tiny-bert")
    return _checkpoint(
        ckpt_root,
        "bi-minilm-bert",
        lambda: build_gliner(_minilm(), labels_encoder_dir=labels_encoder, seed=3, logit_scale=LOGIT_STD),
    )


@pytest.fixture(scope="session")
def uni_token_minilm(ckpt_root: Path) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner

    return _checkpoint(
        ckpt_root,
        "uni-token-minilm",
        lambda: build_gliner(_minilm(), span_mode="token_level", seed=4, logit_scale=LOGIT_STD),
    )


@pytest.fixture(scope="session")
def bi_token_deberta_bert(ckpt_root: Path) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner

    from .backbones import make_tiny_bert, make_tiny_deberta_v3

    text_encoder = make_tiny_deberta_v3(ckpt_root / "tiny-deberta-v3-b", seed=1)
    labels_encoder = make_tiny_bert(ckpt_root / "tiny-bert-b", seed=1, hidden_size=48)
    return _checkpoint(
        ckpt_root,
        "bi-token-deberta-bert",
        lambda: build_gliner(
            text_encoder,
            labels_encoder_dir=labels_encoder,
            span_mode="token_level",
            hidden_size=40,
            seed=5,
            logit_scale=LOGIT_STD,
        ),
    )


# Relex: short texts keep gliner's torch reference fast at low thresholds (it scores
# every ordered pair of selected entities, (W x max_width)^2 at worst).
RELEX_TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris on 3 March 2021.",
    "Tim Cook, CEO of Apple, visited 東京 with José Álvarez 😀.",
    "x",
    "Marie Curie was born in Warsaw!",
]
RELEX_LABELS = ["person", "organization", "location", "date"]
RELATIONS = ["works for", "located in", "born in", "met"]


@pytest.fixture(scope="session")
def span_relex_minilm(ckpt_root: Path) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner

    return _checkpoint(
        ckpt_root,
        "span-relex-minilm",
        lambda: build_gliner(_minilm(), seed=6, logit_scale=LOGIT_STD, relations_layer="dot"),
    )


@pytest.fixture(scope="session")
def token_relex_minilm(ckpt_root: Path) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner

    return _checkpoint(
        ckpt_root,
        "token-relex-minilm",
        lambda: build_gliner(
            _minilm(), span_mode="token_level", seed=7, logit_scale=LOGIT_STD, relations_layer="dot"
        ),
    )


@pytest.fixture(scope="session")
def relex_backbone(ckpt_root: Path) -> Path:
    """A tiny DeBERTa-v3 (hidden 48): every relation layer is exported on it."""
    from .backbones import make_tiny_deberta_v3

    return make_tiny_deberta_v3(ckpt_root / "tiny-deberta-v3-relex", seed=2)


def relex_layer_checkpoint(
    ckpt_root: Path, backbone: Path, relations_layer: str, triples_layer: str | None = None
) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner

    name = f"relex-{relations_layer}-{triples_layer or 'pair'}"
    return _checkpoint(
        ckpt_root,
        name,
        lambda: build_gliner(
            backbone,
            seed=8,
            max_width=6,
            logit_scale=LOGIT_STD,
            relations_layer=relations_layer,
            triples_layer=triples_layer,
        ),
    )


# The decoder archs' checkpoints (tests/decoders.py imports this module's helpers).
from .decoders import (  # noqa: E402
    prompt_decoder,
    span_decoder,
    span_ours,
    token_decoder,
    token_ours,
    token_prompt_decoder,
)

__all__ = [
    "prompt_decoder",
    "span_decoder",
    "span_ours",
    "token_decoder",
    "token_ours",
    "token_prompt_decoder",
]
