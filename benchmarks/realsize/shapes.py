"""The shapes of the GLiNER releases, and building a random-weight checkpoint of each offline.

Each `Shape` is one record: the backbone's size (layers x width, heads, feed-forward, embedding
rows), the GLiNER head settings of the release it stands for (read from that release's
published gliner_config.json, kept in `tests/release_configs/`; `tests/test_bench_real_size.py`
checks them) and, for the bi-encoder, the label encoder. The weights are random
(`initializer_range` 0.02, as in pre-training) and the head is calibrated
(`build_gliner(logit_scale=DEFAULT_LOGIT_SCALE)`) so that scores spread over (0, 1) and the
agreement check compares real decisions.

Vocabulary: gliner resizes the embeddings to its tokenizer plus the 3 tokens it adds, so the
tokenizer is padded to `vocab` pieces (`tokenizer.py`) and the checkpoint has `vocab + 3` rows
(deberta-v3's releases: 128,001 pieces, 128,004 rows).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tokenizer import deberta_v3_tokenizer, minilm_dir


@dataclass(frozen=True)
class Backbone:
    kind: str  # "deberta-v3" | "bert" | "modernbert"
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int  # tokenizer pieces (the checkpoint gets 3 more rows for gliner's tokens)


@dataclass(frozen=True)
class Head:
    """GLiNERConfig fields of a release (its gliner_config.json)."""

    release: str  # the Hugging Face id whose config these are
    span_mode: str = "markerV0"
    max_width: int = 12
    hidden_size: int = 768
    max_len: int = 384


@dataclass(frozen=True)
class Shape:
    name: str
    backbone: Backbone
    head: Head
    labels_encoder: Backbone | None = None
    note: str = ""

    @property
    def arch(self) -> str:
        return "biencoder_span" if self.labels_encoder else "uniencoder_span"


DEBERTA_V3_VOCAB = 128_100
MDEBERTA_V3_VOCAB = 251_000
SMALL = Backbone("deberta-v3", 6, 768, 12, 3072, DEBERTA_V3_VOCAB)
BASE = Backbone("deberta-v3", 12, 768, 12, 3072, DEBERTA_V3_VOCAB)
LARGE = Backbone("deberta-v3", 24, 1024, 16, 4096, DEBERTA_V3_VOCAB)
BGE_SMALL = Backbone("bert", 12, 384, 12, 1536, 30_522)  # BAAI/bge-small-en-v1.5

SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        # urchade/gliner_small-v2.1 has no config in tests/release_configs: medium-v2.1's head
        Shape(
            "small", SMALL, Head("urchade/gliner_medium-v2.1"), note="deberta-v3-small; medium-v2.1's head"
        ),
        Shape("base", BASE, Head("urchade/gliner_medium-v2.1"), note="deberta-v3-base"),
        Shape("large", LARGE, Head("urchade/gliner_large-v2.1", hidden_size=512), note="deberta-v3-large"),
        Shape(
            "multi",
            Backbone("deberta-v3", 12, 768, 12, 3072, MDEBERTA_V3_VOCAB),
            Head("urchade/gliner_multi-v2.1", hidden_size=512),
            note="mdeberta-v3-base",
        ),
        Shape(
            "bi-small",
            SMALL,
            Head("knowledgator/gliner-bi-small-v1.0"),
            labels_encoder=BGE_SMALL,
            note="deberta-v3-small text encoder, bge-small-en-v1.5 label encoder; head settings assumed "
            "(markerV0, width 12, 384 words: no release config here)",
        ),
        Shape(
            "modernbert",
            Backbone("modernbert", 22, 768, 12, 1152, 50_368),
            Head("answerdotai/ModernBERT-base"),
            note="ModernBERT-base uni-encoder (medium-v2.1's head); a WordPiece tokenizer (MiniLM's, "
            "padded) stands in for ModernBERT's BPE",
        ),
        Shape(
            "large-250k",
            Backbone("deberta-v3", 24, 1024, 16, 4096, MDEBERTA_V3_VOCAB),
            Head("urchade/gliner_large-v2.1", hidden_size=512),
            note="deberta-v3-large with mdeberta's vocabulary: fp32 weights past protobuf's 2 GB",
        ),
    )
}
DEFAULT_SHAPES = ("small", "base", "large", "multi", "bi-small", "modernbert")


def _save(model: Any, tokenizer: Any, out: Path) -> None:
    from gliner_onnx.export.demo.backbones import _no_progress_bars

    with _no_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _wordpiece_tokenizer(vocab_size: int) -> Any:
    """MiniLM's uncased WordPiece tokenizer, padded with filler tokens to `vocab_size`."""
    from transformers import BertTokenizer

    tokens = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokens += [f"\U000f0000{i}" for i in range(vocab_size - len(tokens))]
    return BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True, model_max_length=512)


def build_backbone(b: Backbone, out: Path, seed: int = 0) -> Path:
    """A random `b`-shaped Hugging Face backbone (model + tokenizer) in `out`."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    if b.kind == "deberta-v3":
        from transformers import DebertaV2Model

        from gliner_onnx.export.demo.backbones import deberta_v3_config

        tokenizer = deberta_v3_tokenizer(b.vocab)
        config = deberta_v3_config(
            vocab_size=b.vocab,
            hidden_size=b.hidden,
            num_layers=b.layers,
            num_heads=b.heads,
            intermediate_size=b.ffn,
        )
        make: Any = DebertaV2Model
    elif b.kind == "bert":
        from transformers import BertConfig, BertModel

        tokenizer = None
        config = BertConfig(
            vocab_size=b.vocab,
            hidden_size=b.hidden,
            num_hidden_layers=b.layers,
            num_attention_heads=b.heads,
            intermediate_size=b.ffn,
        )
        make = BertModel
    elif b.kind == "modernbert":
        from transformers import ModernBertConfig, ModernBertModel

        tokenizer = _wordpiece_tokenizer(b.vocab)
        ids = {k: tokenizer.convert_tokens_to_ids(t) for k, t in (("cls", "[CLS]"), ("sep", "[SEP]"))}
        config = ModernBertConfig(
            vocab_size=b.vocab,
            hidden_size=b.hidden,
            num_hidden_layers=b.layers,
            num_attention_heads=b.heads,
            intermediate_size=b.ffn,
            pad_token_id=tokenizer.pad_token_id,
            cls_token_id=ids["cls"],
            sep_token_id=ids["sep"],
            bos_token_id=ids["cls"],
            eos_token_id=ids["sep"],
        )
        make = ModernBertModel
    else:
        raise ValueError(f"unknown backbone kind {b.kind!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make(config).eval()
    if tokenizer is None:  # bge-small's tokenizer is bert-base-uncased's, as MiniLM's
        from gliner_onnx.export.demo.backbones import _no_progress_bars

        with _no_progress_bars():
            model.save_pretrained(out)
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copyfile(minilm_dir() / name, out / name)
    else:
        _save(model, tokenizer, out)
    del model
    return out


def build_checkpoint(shape: Shape, out: Path, scratch: Path) -> Path:
    """Save a random GLiNER of `shape` in `out`. The text backbone is built in `scratch`, then
    deleted; a label encoder is built beside `out` (`<out>-labels-encoder`) and kept: the
    checkpoint's config names it where a release names its Hub id, and gliner loads its
    tokenizer from there."""
    import gc

    from gliner_onnx.export.demo.backbones import DEFAULT_LOGIT_SCALE, build_gliner

    text_dir = build_backbone(shape.backbone, scratch / "text")
    labels_dir = (
        None
        if shape.labels_encoder is None
        else build_backbone(shape.labels_encoder, out.with_name(f"{out.name}-labels-encoder"))
    )
    gc.collect()
    h = shape.head
    model = build_gliner(
        text_dir,
        labels_encoder_dir=labels_dir,
        span_mode=h.span_mode,
        max_width=h.max_width,
        hidden_size=h.hidden_size,
        max_len=h.max_len,
        logit_scale=DEFAULT_LOGIT_SCALE,
    )
    from gliner_onnx.export.demo.backbones import _no_progress_bars

    with _no_progress_bars():
        model.save_pretrained(out)
    del model
    gc.collect()
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def parameters(checkpoint: Path) -> int:
    """Parameters in the checkpoint's weights (memory-mapped: nothing is copied)."""
    import torch

    total = 0
    for f in sorted(checkpoint.glob("*.bin")):
        state = torch.load(f, map_location="cpu", mmap=True, weights_only=True)
        total += sum(t.numel() for t in state.values())
    for f in sorted(checkpoint.glob("*.safetensors")):
        from safetensors import safe_open

        with safe_open(str(f), "pt") as fh:
            total += sum(_numel(fh.get_slice(k).get_shape()) for k in fh.keys())
    return total


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
