"""Tiny, deterministic Hugging Face backbones built offline, for the tests (not shipped).

Nothing here touches a model hub: the tokenizers are trained in a fraction of a second on
the package's corpus (`gliner_onnx/export/data/corpus.txt`, :func:`corpus_lines`), and
the weights are random with a fixed seed.

* :func:`make_tiny_deberta_v3` -- a DeBERTa-v3-like directory: a SentencePiece *unigram*
  model (``spm.model``; ``[PAD]``/``[CLS]``/``[SEP]``/``[UNK]`` at ids 0-3, ``[MASK]``
  appended after the pieces, like ``microsoft/deberta-v3-small``) wrapped in transformers'
  ``DebertaV2Tokenizer`` (saved with its ``tokenizer.json``), and a ``DebertaV2Model``
  with deberta-v3's attention settings (relative attention, 256 position buckets,
  ``p2c|c2p``, shared attention keys, layer-normed relative embeddings, no absolute
  positions).
* :func:`make_tiny_bert` -- a BERT-like directory: a WordPiece vocabulary
  (``vocab.txt`` + ``tokenizer.json``, BERT normalizer/pre-tokenizer, ``[CLS] X [SEP]``)
  and a ``BertModel``.
* :func:`make_tiny_modernbert` -- a ModernBERT directory on :func:`make_tiny_bert`'s WordPiece
  tokenizer (ModernBERT's own is a BPE one; the model does not care), with a local attention
  window shorter than the test texts, so that its sliding-window layers mask something.
* :func:`tokenizer_roundtrip_mismatches` -- compares ``tokenizers.Tokenizer.from_file``
  on a saved ``tokenizer.json`` with ``AutoTokenizer.from_pretrained`` on pre-split words.

GLiNERs are built on them with the package's :func:`gliner_onnx.export.demo.backbones.build_gliner`
(the demo's builder).

Determinism: the same call gives byte-identical files (weights, ``tokenizer.json``,
``spm.model``, ``vocab.txt``, configs) across calls and processes. The WordPiece
vocabulary is *not* learnt with ``tokenizers.trainers.WordPieceTrainer`` on purpose: that
trainer breaks ties between equally frequent merges in hash-map order, which changes from
one process to the next. Instead, SentencePiece's BPE (deterministic with one thread)
learns the subwords on BERT-pre-tokenized words and they are converted to WordPiece form.

All torch randomness happens inside ``torch.random.fork_rng``: the caller's global RNG
state is left untouched.
"""

from __future__ import annotations

import io
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gliner_onnx.export.demo.backbones import _no_progress_bars, deberta_v3_config
from gliner_onnx.export.samples import corpus_lines

# Tokens that gliner 0.2.29 adds to the backbone tokenizer (``_get_special_tokens``).
GLINER_TOKENS = ("[FLERT]", "<<ENT>>", "<<SEP>>")

# Texts for round-trip checks and demos: they mix what the corpus has with what it lacks
# (unseen words and characters, which must map to [UNK] / single pieces identically).
SAMPLE_TEXTS: tuple[str, ...] = (
    "Angela Merkel visited 東京タワー in 2019.",
    "Dr. Jean-Luc Picard met Zürich's mayor at the café on 2024-03-15 (10:30 a.m.).",
    "Her naïve résumé listed Apple Inc., IBM and state-of-the-art NLP -- wow!",
    "北京和上海是中国的大城市。東京タワーは333メートルです。",
    "Москва — столица России; Юрий Гагарин полетел в 1961 году.",
    "القاهرة هي عاصمة مصر. ירושלים היא עיר עתיקה.",
    "I love pizza 🍕 and sushi 🍣!!! 😀 👍🏽 🇩🇪 ❤️",
    "Prices: €19.99 / £12.50 / ¥1,200 — call +1 (555) 123-4567.",
    "Unseen words: Xylophonic quasquicentennial Ωmega ꙮ zzzyyyxxx ǅemal.",
    "UPPER lower MiXeD CaSe ÉCOLE Ökonomie ΣΊΣΥΦΟΣ İstanbul",
    "Tabs\tand   multiple   spaces , trailing punctuation .",
    "Combining: cafe\u0301 n\u0303 vs café ñ; ligature ﬁ; full-width ＡＢＣ１２３; NBSP\u00a0here",
    "Special-looking text: [CLS] [SEP] [MASK] <<ENT>> <<SEP>> [FLERT] [UNK] <s> </s>",
)


# ---------------------------------------------------------------------------------------
# DeBERTa-v3
# ---------------------------------------------------------------------------------------
def _keep_frequent_chars(lines: Sequence[str], budget: int) -> list[str]:
    """Drop from ``lines`` every character but the ``budget`` most frequent (ties by code
    point) so that a small vocabulary can hold all remaining characters; the dropped ones
    are unknown to the trained model."""
    counts = Counter(c for line in lines for c in line if not c.isspace())
    if len(counts) <= budget:
        return list(lines)
    keep = {c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:budget]}
    return [
        line for line in ("".join(c for c in s if c in keep or c.isspace()) for s in lines) if line.strip()
    ]


def _train_sentencepiece(lines: Sequence[str], vocab_size: int, **options: Any) -> bytes:
    """Train a SentencePiece model in memory, single-threaded (hence deterministic)."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=vocab_size,
        character_coverage=1.0,
        num_threads=1,
        hard_vocab_limit=False,  # a small corpus may not fill a large vocabulary
        shuffle_input_sentence=False,
        minloglevel=2,
        **options,
    )
    return buf.getvalue()


def _deberta_v3_tokenizer(vocab_size: int):
    """A ``DebertaV2Tokenizer`` over a freshly trained unigram model, and the model bytes."""
    import sentencepiece as spm
    from transformers import DebertaV2Tokenizer

    if vocab_size < 32:
        raise ValueError(f"vocab_size must be at least 32, got {vocab_size}")
    # transformers' DebertaV2Tokenizer normalizes with NFC (not with the spm model's
    # rules), so learn the pieces on NFC text with SentencePiece's normalization off.
    lines = [unicodedata.normalize("NFC", line) for line in corpus_lines()]
    # 5 = [MASK] + the 4 pieces at ids 0-3; keep a quarter of the rest for subwords.
    lines = _keep_frequent_chars(lines, (vocab_size - 5) * 3 // 4)
    proto = _train_sentencepiece(
        lines,
        vocab_size - 1,  # room for [MASK], appended after the pieces as in deberta-v3
        model_type="unigram",
        normalization_rule_name="identity",
        pad_id=0,
        pad_piece="[PAD]",
        bos_id=1,
        bos_piece="[CLS]",
        eos_id=2,
        eos_piece="[SEP]",
        unk_id=3,
        unk_piece="[UNK]",
    )
    sp = spm.SentencePieceProcessor(model_proto=proto)
    pieces = [(sp.id_to_piece(i), float(sp.get_score(i))) for i in range(sp.get_piece_size())]
    # Built from the piece list rather than from spm.model so that tokenizer_config.json
    # carries no load-time kwargs; the pipeline is identical (transformers 5 builds the
    # same normalizer/pre-tokenizer/post-processor from spm.model).
    tokenizer = DebertaV2Tokenizer(
        vocab=pieces,
        unk_id=sp.unk_id(),
        do_lower_case=False,
        split_by_punct=False,
        bos_token="[CLS]",
        eos_token="[SEP]",
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    return tokenizer, proto


def make_tiny_deberta_v3(
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 1000,
    seed: int = 0,
    initializer_range: float = 0.1,
) -> Path:
    """Write a tiny random DeBERTa-v3-like backbone (model + tokenizer) to ``out_dir``.

    ``initializer_range`` defaults to 0.1, not pretraining's 0.02: a 2-layer random encoder
    initialised at 0.02 gives nearly identical token states, and heads calibrated to spread
    scores (``build_gliner(logit_scale=...)``) then amplify float32 noise to ~2e-4 on the
    probabilities, which flips near-ties between runtimes. At 0.1 the noise stays ~1e-5.

    The directory holds ``config.json``, ``model.safetensors``, ``spm.model``,
    ``tokenizer.json`` and ``tokenizer_config.json``, and loads fully offline with
    ``AutoModel``/``AutoTokenizer.from_pretrained``. ``vocab_size`` is the size of the
    embedding matrix; the tokenizer has at most that many tokens (fewer only when the
    built-in corpus cannot fill the vocabulary: about 1100 pieces at most).
    """
    import torch
    from transformers import DebertaV2Model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, proto = _deberta_v3_tokenizer(vocab_size)

    config = deberta_v3_config(  # microsoft/deberta-v3-small's config.json, scaled down
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=initializer_range,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DebertaV2Model(config).eval()
    with _no_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "spm.model").write_bytes(proto)
    return out


# ---------------------------------------------------------------------------------------
# BERT
# ---------------------------------------------------------------------------------------
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _bert_pretokenize(lines: Iterable[str], lowercase: bool) -> list[list[str]]:
    """Words as BERT sees them: BERT normalizer (lowercasing strips accents) + splitter."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return [[w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))] for line in lines]


def _wordpiece_vocab(vocab_size: int, lowercase: bool) -> list[str]:
    """A deterministic WordPiece vocabulary learnt on the built-in corpus.

    Specials, then every character needed to spell every corpus word (word-initial form
    ``c`` and continuation form ``##c``, most frequent first), then SentencePiece BPE
    subwords converted to WordPiece (``▁xy`` -> ``xy``, ``xy`` -> ``##xy``), in merge order.
    """
    import sentencepiece as spm

    words_per_line = _bert_pretokenize(corpus_lines(), lowercase)
    initial: Counter[str] = Counter()
    continuation: Counter[str] = Counter()
    for words in words_per_line:
        for word in words:
            initial[word[0]] += 1
            continuation.update(word[1:])

    def by_frequency(counter: Counter[str], prefix: str) -> list[str]:
        return [prefix + c for c, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]

    vocab: list[str] = list(_BERT_SPECIALS)
    seen = set(vocab)

    def add(tokens: Iterable[str]) -> None:
        for token in tokens:
            if token not in seen:
                seen.add(token)
                vocab.append(token)

    add(by_frequency(initial, ""))
    add(by_frequency(continuation, "##"))

    proto = _train_sentencepiece(
        [" ".join(words) for words in words_per_line],
        max(vocab_size, len(vocab) + 8),
        model_type="bpe",
        normalization_rule_name="identity",
        split_by_whitespace=True,
        add_dummy_prefix=True,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        unk_id=0,
    )
    sp = spm.SentencePieceProcessor(model_proto=proto)
    merged = []
    for i in range(sp.get_piece_size()):
        if sp.is_unknown(i) or sp.is_control(i):
            continue
        piece = sp.id_to_piece(i)
        if piece == "▁":
            continue
        merged.append(piece[1:] if piece.startswith("▁") else "##" + piece)
    add(merged)
    return vocab[:vocab_size]


def make_tiny_bert(
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 1000,
    seed: int = 0,
    lowercase: bool = True,
    initializer_range: float = 0.1,
) -> Path:
    """Write a tiny random BERT backbone (model + WordPiece tokenizer) to ``out_dir``.

    The directory holds ``config.json``, ``model.safetensors``, ``vocab.txt``,
    ``tokenizer.json`` and ``tokenizer_config.json`` (``model_max_length`` 512, like
    bert-base), and loads fully offline with ``AutoModel``/``AutoTokenizer``.
    ``lowercase=True`` is bert-base-uncased-like (lowercasing + accent stripping),
    ``False`` cased.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    if vocab_size < len(_BERT_SPECIALS) + 1:
        raise ValueError(f"vocab_size must be at least {len(_BERT_SPECIALS) + 1}, got {vocab_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokens = _wordpiece_vocab(vocab_size, lowercase)
    tokenizer = BertTokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        do_lower_case=lowercase,
        tokenize_chinese_chars=True,
        strip_accents=None,
        model_max_length=512,
    )

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=initializer_range,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config).eval()
    with _no_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return out


def make_tiny_modernbert(
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 3,
    num_heads: int = 2,
    local_attention: int = 8,
    vocab_size: int = 1000,
    seed: int = 0,
) -> Path:
    """Write a tiny random ModernBERT backbone to ``out_dir``: layer 0 attends globally, the
    others within ``local_attention`` tokens (ModernBERT's alternation: a global layer every
    3), rotary positions; the tokenizer is :func:`make_tiny_bert`'s (uncased WordPiece)."""
    import torch
    from transformers import BertTokenizer, ModernBertConfig, ModernBertModel

    out = Path(out_dir)
    make_tiny_bert(out, vocab_size=vocab_size, seed=seed)  # the tokenizer files; the model is replaced
    tokenizer = BertTokenizer.from_pretrained(out)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]")}
    config = ModernBertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=3 * hidden_size,
        global_attn_every_n_layers=3,
        local_attention=local_attention,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=ids["[CLS]"],
        sep_token_id=ids["[SEP]"],
        bos_token_id=ids["[CLS]"],
        eos_token_id=ids["[SEP]"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ModernBertModel(config).eval()
    for stale in out.glob("model*.safetensors"):
        stale.unlink()
    with _no_progress_bars():
        model.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------
# Tokenizer round trip
# ---------------------------------------------------------------------------------------
def _split_words(text: str) -> list[str]:
    """gliner 0.2.29's default ``WhitespaceTokenSplitter`` (``\\w+(?:[-_]\\w+)*|\\S``)."""
    import re

    return [m.group() for m in re.finditer(r"\w+(?:[-_]\w+)*|\S", text)]


def tokenizer_roundtrip_mismatches(
    model_dir: str | Path,
    texts: Sequence[str] = SAMPLE_TEXTS,
    *,
    tokenizer: Any = None,
) -> list[str]:
    """Differences between ``tokenizers`` on ``model_dir/tokenizer.json`` and transformers.

    Each text is split into words twice (on whitespace and with gliner's default regex
    splitter); the words are encoded with ``Tokenizer.from_file(...).encode_batch(...,
    is_pretokenized=True)`` and with ``tokenizer(words, is_split_into_words=True)``, where
    ``tokenizer`` defaults to ``AutoTokenizer.from_pretrained(model_dir)``. Returns one
    line per mismatching text (empty when everything is identical).
    """
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # A tokenizer.json saved by gliner carries the padding (and, for BERT, truncation)
    # state of its last batched call; compare unpadded, untruncated ids.
    raw.no_padding()
    raw.no_truncation()
    hf = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model_dir)
    batch = [text.split() for text in texts] + [_split_words(text) for text in texts]
    got = [enc.ids for enc in raw.encode_batch(batch, is_pretokenized=True)]
    want = hf(batch, is_split_into_words=True)["input_ids"]
    problems = []
    for words, a, b in zip(batch, got, want):
        if a != b:
            problems.append(f"{words!r}: tokenizers={a} transformers={b}")
    # Plain (not pre-split) strings too: the bi-encoder's labels are encoded that way.
    got = [enc.ids for enc in raw.encode_batch(list(texts))]
    want = hf(list(texts))["input_ids"]
    for text, a, b in zip(texts, got, want):
        if a != b:
            problems.append(f"{text!r} (plain): tokenizers={a} transformers={b}")
    return problems
