"""The demo's GLiNER builder on local backbone directories, and a tiny GPT-2 label decoder.

Nothing here touches a model hub; the weights are random with a fixed seed.

* :func:`build_gliner` -- a random-init GLiNER (uni- or bi-encoder, span or token level,
  relex, decoder) on local backbones, with an optional ``logit_scale`` that spreads the
  sigmoid scores over (0, 1) (`calibration.py`) so that thresholds and decoding are
  actually exercised.
* :func:`deberta_v3_config` -- a ``DebertaV2Config`` with deberta-v3's attention settings
  at any size (the tests' tiny backbones, the real-size benchmark's).
* :func:`make_tiny_gpt2` -- a tiny random GPT-2 with a byte-level BPE tokenizer trained on
  the package's corpus, the demo decoder archs' label decoder.

The tests' tiny DeBERTa-v3 and BERT backbones are in the repository's `tests/backbones.py`.
All torch randomness happens inside ``torch.random.fork_rng``: the caller's global RNG
state is left untouched.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..quiet import quiet_loading
from ..samples import corpus_lines
from .calibration import calibrate_head, calibrate_relations, calibrate_span_logits

if TYPE_CHECKING:  # pragma: no cover
    import gliner

__all__ = ["DEFAULT_LOGIT_SCALE", "build_gliner", "deberta_v3_config", "make_tiny_gpt2"]

# ``logit_scale`` for :func:`build_gliner`: the standard deviation of the calibrated
# logits. For N(0, 2^2) logits, P(|x| < logit(0.7) = 0.847) = 0.33, so about a third of
# the scores fall in each of (0, 0.3), (0.3, 0.7) and (0.7, 1) (checked in the tests).
DEFAULT_LOGIT_SCALE = 2.0
# Above this, sigmoid(logit) is 0 or 1 (to float32 precision) for most pairs.
_MAX_LOGIT_SCALE = 16.0


@contextlib.contextmanager
def _no_progress_bars():
    """Silence transformers' "Writing model shards" / "Loading weights" bars meanwhile."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def build_gliner(
    backbone_dir: str | Path,
    *,
    labels_encoder_dir: str | Path | None = None,
    span_mode: str = "markerV0",
    max_width: int = 12,
    hidden_size: int | None = None,
    max_len: int = 384,
    seed: int = 0,
    logit_scale: float = 1.0,
    **config_overrides: Any,
) -> gliner.GLiNER:
    """A random-init GLiNER (torch, eval mode) on local backbone directories, offline.

    The recipe (gliner 0.2.29, transformers 5.x):

    * ``GLiNERConfig(model_name=<abs backbone dir>, labels_encoder=<abs dir or None>,
      span_mode=..., max_width=..., hidden_size=..., max_len=...)``; the architecture
      follows from ``span_mode`` (``"token_level"`` = token model) and ``labels_encoder``
      (set = bi-encoder). ``hidden_size`` defaults to the backbone width; a different
      value makes gliner add a ``projection`` Linear after the encoder (and a
      ``labels_projection`` after a labels encoder of another width).
    * ``GLiNER.from_config(config, backbone_from_pretrained=True, load_tokenizer=True,
      local_files_only=True)``: loads the backbone weights from the directory and its
      tokenizer with ``AutoTokenizer``; uni-encoders get ``[FLERT]``, ``<<ENT>>`` and
      ``<<SEP>>`` added as special tokens and their embeddings resized (``class_token_index``
      and ``vocab_size`` are set in the config); bi-encoders keep the backbone
      vocabulary (gliner only warns that resizing is not supported).
    * The GLiNER heads are initialised from ``torch.manual_seed(seed)`` (inside
      ``fork_rng``, the caller's RNG is untouched).
    * ``logit_scale == 1.0`` leaves gliner's own initialisation, whose scores all sit
      near 0.5. Any other value calls :func:`calibrate_head`: the head's last Linear
      layers are centred and rescaled on built-in sentences so that the logits are about
      ``N(0, logit_scale**2)`` there; :data:`DEFAULT_LOGIT_SCALE` (2.0) puts about a
      third of the scores in each of (0, 0.3), (0.3, 0.7) and (0.7, 1). (Multiplying the
      weights alone cannot do this: the raw logits are not centred on 0.)

    ``model.save_pretrained(d)`` then ``GLiNER.from_pretrained(d, load_tokenizer=True,
    local_files_only=True)`` reloads it without the backbone directories: the encoder
    configs travel inside ``gliner_config.json`` and the tokenizers are saved in ``d``
    (``d/labels_tokenizer`` for the bi-encoder's). ``config_overrides`` go to
    ``GLiNERConfig`` (e.g. ``dropout``, ``num_rnn_layers``, ``subtoken_pooling``,
    ``post_fusion_schema``).
    """
    import torch
    from gliner import GLiNER, GLiNERConfig
    from transformers import AutoConfig

    _check_logit_scale(logit_scale)
    backbone = Path(backbone_dir).resolve()
    if hidden_size is None:
        hidden_size = AutoConfig.from_pretrained(backbone, local_files_only=True).hidden_size
    fields: dict[str, Any] = {
        "model_name": str(backbone),
        "labels_encoder": None if labels_encoder_dir is None else str(Path(labels_encoder_dir).resolve()),
        "span_mode": span_mode,
        "max_width": max_width,
        "hidden_size": hidden_size,
        "max_len": max_len,
    }
    fields.update(config_overrides)
    config = GLiNERConfig(**fields)
    with torch.random.fork_rng(devices=[]), _no_progress_bars():
        torch.manual_seed(seed)
        with quiet_loading():
            model = GLiNER.from_config(
                config,
                backbone_from_pretrained=True,
                load_tokenizer=True,
                local_files_only=True,
            )
        model.eval()
        if logit_scale != 1.0:
            _calibrate(model, logit_scale)
    return model


def deberta_v3_config(
    *,
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int | None = None,
    pad_token_id: int = 0,
    initializer_range: float = 0.02,
) -> Any:
    """A ``DebertaV2Config`` with microsoft/deberta-v3-*'s settings at the given size.

    Relative attention with 256 position buckets, ``p2c|c2p``, shared attention keys,
    layer-normed relative embeddings and no absolute positions, as in deberta-v3-small's
    config.json. ``position_buckets``, ``norm_rel_ebd`` and ``share_att_key`` are not
    declared fields of DebertaV2Config: they are kept as extra attributes, saved in
    config.json and read by the model with getattr. ``intermediate_size`` defaults to
    ``4 * hidden_size``.
    """
    from transformers import DebertaV2Config

    fields: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": intermediate_size or 4 * hidden_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 0,
        "initializer_range": initializer_range,
        "layer_norm_eps": 1e-7,
        "relative_attention": True,
        "max_relative_positions": -1,
        "position_buckets": 256,
        "pos_att_type": ["p2c", "c2p"],
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "position_biased_input": False,
        "pad_token_id": pad_token_id,
    }
    return DebertaV2Config(**fields)


def _check_logit_scale(logit_scale: float) -> None:
    if logit_scale != 1.0 and not 0 < logit_scale <= _MAX_LOGIT_SCALE:
        raise ValueError(
            f"logit_scale={logit_scale}: it is the standard deviation of the calibrated logits, "
            f"not a multiplier of the raw ones; use (0, {_MAX_LOGIT_SCALE:g}] "
            f"(DEFAULT_LOGIT_SCALE={DEFAULT_LOGIT_SCALE:g}), larger values saturate every score to 0 or 1"
        )


def _calibrate(model: gliner.GLiNER, logit_scale: float) -> None:
    """`build_gliner`'s calibration of every head the model has (the RNG as it finds it)."""
    # Decoder models: calibrate the span head without generating labels (gliner's
    # generation fails on a batch with no span above the threshold).
    labels_decoder = getattr(model.config, "labels_decoder", None)
    model.config.labels_decoder = None
    try:
        calibrate_head(model, logit_scale)  # inference's DataLoader draws from the RNG
        if getattr(model.config, "represent_spans", False):
            calibrate_span_logits(model, logit_scale)
    finally:
        model.config.labels_decoder = labels_decoder
    if getattr(model.config, "relations_layer", None) is not None:
        calibrate_relations(model, logit_scale)


# ---------------------------------------------------------------------------------------
# GPT-2 (the generative label decoder)
# ---------------------------------------------------------------------------------------
GPT2_EOS = "<|endoftext|>"


def _byte_level_bpe(vocab_size: int):
    """A GPT-2-style byte-level BPE `tokenizers.Tokenizer` trained on the corpus (`samples.corpus_lines`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[GPT2_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    return tok


def make_tiny_gpt2(
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 600,
    seed: int = 0,
    n_positions: int = 1024,
    logit_std: float = 4.0,
    model_vocab_size: int | None = None,
) -> Path:
    """Write a tiny random GPT-2 (``GPT2LMHeadModel`` + byte-level BPE tokenizer) to ``out_dir``.

    The tokenizer is trained with ``tokenizers`` on the corpus (``<|endoftext|>`` is
    bos, eos and unk, like GPT-2's) and saved as a (fast) ``GPT2Tokenizer`` directory. The
    LM head is untied from the input embeddings and scaled so that the logits spread
    (standard deviation about ``logit_std``): greedy choices of a random model are then
    far from ties, which float rounding could otherwise flip. ``model_vocab_size`` (at least
    the tokenizer's) pads the model's vocabulary, e.g. to GPT-2's 50257 for timing work.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backend = _byte_level_bpe(vocab_size)
    tokenizer = GPT2Tokenizer(  # transformers 5: the fast (tokenizers) one
        tokenizer_object=backend,
        bos_token=GPT2_EOS,
        eos_token=GPT2_EOS,
        unk_token=GPT2_EOS,
        model_max_length=n_positions,
    )
    eos_id = backend.token_to_id(GPT2_EOS)
    if model_vocab_size is not None and model_vocab_size < backend.get_vocab_size():
        raise ValueError(f"model_vocab_size must be at least the tokenizer's {backend.get_vocab_size()}")
    config = GPT2Config(
        vocab_size=model_vocab_size or backend.get_vocab_size(),
        n_positions=n_positions,
        n_embd=hidden_size,
        n_layer=num_layers,
        n_head=num_heads,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config).eval()
        with torch.no_grad():
            head = model.lm_head.weight
            # logits = h . w with h ~ LayerNorm output (unit variance per coordinate)
            head.copy_(torch.randn_like(head) * (logit_std / math.sqrt(hidden_size)))
    with _no_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
