"""The two generative decoder archs' test checkpoints and references, shared by
tests/test_decoder.py (what both archs do, parametrized by arch; the span arch's own
behaviour) and tests/test_token_decoder.py (the token arch's own behaviour).

The span arch's reference is gliner's own inference. gliner 0.2.29 cannot run the token
arch's (see test_token_decoder.py): its reference is gliner's model with the runtime's two
corrections fed into its `select_token_decoder_embedding` (`corrected_token_decoder`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gliner_onnx import GLiNER
from gliner_onnx.export.decoder_export import corrected_token_decoder

from .conftest import LOGIT_STD, TEXTS, Checkpoint, _checkpoint, _minilm

THRESHOLDS = (0.3, 0.5, 0.7)
# Every span above the threshold is generated for, so keep the batch small.
PARITY_TEXTS = [*TEXTS[:4], TEXTS[-1]]
CONSTRAINTS = ["person", "city", "organization name", "date of birth", "award"]
SCORE_TOL = 1e-4
TOKEN_LOGIT_SHIFT = 1.5
EMPTY_GENERATION = "cannot reshape tensor of 0 elements"

Entities = list[dict[str, Any]]


@pytest.fixture(scope="session")
def span_decoder(ckpt_root: Path) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner, make_tiny_gpt2

    gpt2 = make_tiny_gpt2(ckpt_root / "tiny-gpt2")
    return _checkpoint(
        ckpt_root,
        "span-decoder",
        lambda: build_gliner(
            _minilm(), seed=6, logit_scale=LOGIT_STD, labels_decoder=str(gpt2), decoder_mode="span"
        ),
    )


@pytest.fixture(scope="session")
def prompt_decoder(ckpt_root: Path) -> Checkpoint:
    return _prompt_checkpoint(
        ckpt_root, "prompt-decoder", "tiny-gpt2-48", "tiny-deberta-v3-dec", seeds=(1, 7)
    )


@pytest.fixture(scope="session")
def span_ours(span_decoder: Checkpoint) -> GLiNER:
    return GLiNER.from_pretrained(span_decoder.export_dir)


@pytest.fixture(scope="session")
def token_decoder(ckpt_root: Path) -> Checkpoint:
    from gliner_onnx.export.demo.backbones import build_gliner, make_tiny_gpt2

    gpt2 = make_tiny_gpt2(ckpt_root / "tiny-gpt2-token")

    def build() -> Any:
        model = build_gliner(
            _minilm(),
            span_mode="token_level",
            seed=8,
            logit_scale=LOGIT_STD,
            labels_decoder=str(gpt2),
            decoder_mode="span",
        )
        return _lean_positive(model)

    return _checkpoint(ckpt_root, "token-decoder", build)


def _lean_positive(model: Any) -> Any:
    """A candidate span needs start, end and every inside score above the threshold on
    one label; with centred random token logits few survive at 0.7. Shift them up."""
    import torch

    with torch.no_grad():
        model.model.scorer.out_mlp[-1].bias.add_(TOKEN_LOGIT_SHIFT)
    return model


@pytest.fixture(scope="session")
def token_prompt_decoder(ckpt_root: Path) -> Checkpoint:
    return _prompt_checkpoint(
        ckpt_root,
        "token-prompt-decoder",
        "tiny-gpt2-48-token",
        "tiny-deberta-v3-token-dec",
        seeds=(2, 9),
        token=True,
    )


def _prompt_checkpoint(
    ckpt_root: Path, name: str, gpt2_dir: str, backbone_dir: str, seeds: tuple[int, int], token: bool = False
) -> Checkpoint:
    """Prompt mode on a tiny DeBERTa as wide as the decoder (no projection); seeds: (the
    decoder's, the heads'); token: the token-level head, its logits leaning positive."""
    from gliner_onnx.export.demo.backbones import build_gliner, make_tiny_gpt2

    from .backbones import make_tiny_deberta_v3

    gpt2 = make_tiny_gpt2(ckpt_root / gpt2_dir, hidden_size=48, seed=seeds[0])
    backbone = make_tiny_deberta_v3(ckpt_root / backbone_dir)

    def build() -> Any:
        model = build_gliner(
            backbone,
            **({"span_mode": "token_level"} if token else {}),
            seed=seeds[1],
            max_width=8,
            hidden_size=48,
            logit_scale=LOGIT_STD,
            labels_decoder=str(gpt2),
            decoder_mode="prompt",
        )
        return _lean_positive(model) if token else model

    return _checkpoint(ckpt_root, name, build)


@pytest.fixture(scope="session")
def token_ours(token_decoder: Checkpoint) -> GLiNER:
    return GLiNER.from_pretrained(token_decoder.export_dir)


def assert_same(
    ref: Sequence[list[dict[str, Any]] | None], got: list[list[dict[str, Any]]], where: str
) -> int:
    """Same entities and generated labels, scores within SCORE_TOL; the number compared.
    A None reference text: the reference selected nothing (ours must find nothing)."""
    assert len(ref) == len(got), where
    n = 0
    for i, (r, g) in enumerate(zip(ref, got)):
        if r is None:
            assert g == [], f"{where}, text {i}"
            continue
        assert [{**e, "score": 0} for e in g] == [{**e, "score": 0} for e in r], f"{where}, text {i}"
        for er, eg in zip(r, g):
            assert abs(er["score"] - eg["score"]) <= SCORE_TOL, f"{where}, text {i}"
        n += len(r)
    return n


def corrected_reference(ckpt: Checkpoint, texts: list[str], labels: Any, **kw: Any) -> list[Entities | None]:
    """The corrected reference, one text per batch (gliner's batches crash on spans in
    padding). None for a text where no span is selected: gliner's generation crashes on
    an empty batch, and no entity can pass the threshold there."""
    out: list[Entities | None] = []
    with corrected_token_decoder(ckpt.torch_model, kw["threshold"]):
        for i, text in enumerate(texts):
            text_labels = labels[i] if labels and isinstance(labels[0], list) else labels
            try:
                out.append(ckpt.torch_model.inference([text], text_labels, batch_size=1, **kw)[0])
            except RuntimeError as e:
                assert EMPTY_GENERATION in str(e)
                out.append(None)
    return out


@dataclass(frozen=True)
class DecoderArch:
    """One decoder arch under test: its span-mode checkpoint and export, and its reference."""

    name: str
    ckpt: Checkpoint
    ours: GLiNER
    reference: Callable[..., list[Entities | None]]  # (texts, labels, **inference kwargs)
    batch_size: int  # ours and the reference's (a prefix's padding depends on its batch); the
    # token arch's reference runs one text per batch whatever it is given
    graphs: tuple[str, ...]
    free_labels: int  # at least this many distinct labels in free generation over the thresholds


def decoder_arch(request: pytest.FixtureRequest, name: str) -> DecoderArch:
    if name == "span":
        ckpt: Checkpoint = request.getfixturevalue("span_decoder")
        model = ckpt.torch_model

        def gliner_reference(texts: list[str], labels: Any, **kw: Any) -> list[Entities | None]:
            return list(model.inference(texts, labels, **kw))

        graphs = ("text_encoder", "scorer", "decoder_prefix", "decoder_step")
        return DecoderArch(name, ckpt, request.getfixturevalue("span_ours"), gliner_reference, 8, graphs, 10)
    ckpt = request.getfixturevalue("token_decoder")

    def reference(texts: list[str], labels: Any, batch_size: int, **kw: Any) -> list[Entities | None]:
        return corrected_reference(ckpt, texts, labels, **kw)

    graphs = ("text_encoder", "scorer", "span_encoder", "decoder_prefix", "decoder_step")
    return DecoderArch(name, ckpt, request.getfixturevalue("token_ours"), reference, 1, graphs, 5)
