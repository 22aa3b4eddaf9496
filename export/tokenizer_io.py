"""Write the reference's HF tokenizers as `tokenizers` JSON files, and prove they match.

The file is the backend tokenizer as gliner set it up (added `<<ENT>>`/`<<SEP>>`
tokens, DeBERTa's bos/eos post-processor). The runtime's `SubwordTokenizer` must
reproduce the HF call's input_ids, attention_mask and word ids exactly on the
validation inputs, or the export fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliner_onnx.errors import ExportError
from gliner_onnx.manifest import TokenizerEntry, sha256_file
from gliner_onnx.runtime.tokenize import SubwordTokenizer

_NO_LIMIT = 1_000_000


def write_tokenizer(hf_tokenizer: Any, directory: Path, file: str) -> TokenizerEntry:
    if not getattr(hf_tokenizer, "is_fast", False) or not hasattr(hf_tokenizer, "backend_tokenizer"):
        raise ExportError(
            f"tokenizer {type(hf_tokenizer).__name__} has no fast (tokenizers) version; "
            "only fast tokenizers can be exported"
        )
    path = directory / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(hf_tokenizer.backend_tokenizer.to_str(), encoding="utf-8")
    if hf_tokenizer.pad_token_id is None or hf_tokenizer.pad_token is None:
        raise ExportError(f"tokenizer {type(hf_tokenizer).__name__} has no pad token")
    mml = getattr(hf_tokenizer, "model_max_length", None)
    return TokenizerEntry(
        file=file,
        sha256=sha256_file(path),
        pad_token_id=int(hf_tokenizer.pad_token_id),
        pad_token=str(hf_tokenizer.pad_token),
        model_max_length=int(mml) if isinstance(mml, int) and 0 < mml < _NO_LIMIT else None,
    )


def load_runtime_tokenizer(directory: Path, entry: TokenizerEntry) -> SubwordTokenizer:
    return SubwordTokenizer(
        directory / entry.file,
        pad_token_id=entry.pad_token_id,
        pad_token=entry.pad_token,
        model_max_length=entry.model_max_length,
    )


def check_words_tokenization(
    hf_tokenizer: Any, ours: SubwordTokenizer, batches: Sequence[Sequence[Sequence[str]]]
) -> None:
    """Our tokenization of pre-split words equals the reference's HF call, or raise."""
    for words in batches:
        ref = hf_tokenizer(
            [list(w) for w in words], is_split_into_words=True, truncation=True, padding="longest"
        )
        got = ours.encode_words(words)
        ref_word_ids = np.array(
            [[-1 if w is None else w for w in ref.word_ids(i)] for i in range(len(words))], dtype=np.int64
        )
        _compare(ref["input_ids"], got.input_ids, "input_ids", words)
        _compare(ref["attention_mask"], got.attention_mask, "attention_mask", words)
        _compare(ref_word_ids, got.word_ids, "word ids", words)


def check_text_tokenization(hf_tokenizer: Any, ours: SubwordTokenizer, texts: Sequence[str]) -> None:
    ref = hf_tokenizer(list(texts), truncation=True, padding="longest")
    got = ours.encode_texts(texts)
    _compare(ref["input_ids"], got.input_ids, "label input_ids", texts)
    _compare(ref["attention_mask"], got.attention_mask, "label attention_mask", texts)


def _compare(ref: Any, got: np.ndarray, what: str, example: Any) -> None:
    ref_arr = np.asarray(ref, dtype=np.int64)
    if ref_arr.shape != got.shape or not np.array_equal(ref_arr, got):
        raise ExportError(
            f"the exported tokenizer.json does not reproduce the model's tokenizer ({what} differ "
            f"on {list(example)[:2]!r}...): this tokenizer cannot be exported faithfully"
        )
