"""Exact arrays for each runtime stage, against gliner 0.2.29's own functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gliner.data_processing.tokenizer import WhitespaceTokenSplitter
from gliner.data_processing.utils import prepare_span_idx, prepare_word_mask
from torch.nn.utils.rnn import pad_sequence

from gliner_onnx.runtime.labels import build_prompt, normalize_label_set, normalize_labels
from gliner_onnx.runtime.spans import span_idx
from gliner_onnx.runtime.tokenize import SubwordTokenizer, words_mask
from gliner_onnx.runtime.words import split_words

from .conftest import TEXTS


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("foo-bar e-mail snake_case", ["foo-bar", "e-mail", "snake_case"]),
        ("3.14 don't", ["3", ".", "14", "don", "'", "t"]),
        ("東京タワー 😀👍🏽", ["東京タワー", "😀", "👍", "🏽"]),
        ("  ", []),
    ],
)
def test_split_words_examples(text: str, words: list[str]) -> None:
    assert list(split_words(text).words) == words


@pytest.mark.parametrize("text", [*TEXTS, "Zürich\u200bcafé\u0301 \u202eabc\u202c x\ty\r\nz"])
def test_split_words_equals_reference(text: str) -> None:
    ours = split_words(text)
    ref = list(WhitespaceTokenSplitter()(text))
    assert list(zip(ours.words, ours.starts, ours.ends)) == ref
    assert all(text[s:e] == w for w, s, e in ref)


def test_unknown_splitter() -> None:
    with pytest.raises(ValueError, match="unsupported words splitter 'nltk'"):
        split_words("a b", "nltk")


def test_labels_are_deduplicated_in_order() -> None:
    s = normalize_label_set(["b", "a", "b", "c", "a"])
    assert s.prompts == ("b", "a", "c") and s.names == s.prompts
    d = normalize_label_set({"person": "a human", "city": "a town"})
    assert d.prompts == ("a human", "a town") and d.names == ("person", "city")
    assert [x.prompts for x in normalize_labels([["x"], {"y": "z"}], 2)] == [("x",), ("z",)]
    with pytest.raises(ValueError, match="unique"):
        normalize_label_set({"a": "same", "b": "same"})


def test_prompt_words() -> None:
    assert build_prompt(["person", "big city"], "<<ENT>>", "<<SEP>>") == [
        "<<ENT>>",
        "person",
        "<<ENT>>",
        "big city",
        "<<SEP>>",
    ]


class _FakeEncoding:
    def __init__(self, rows: list[list[int | None]]):
        self.rows = rows

    def word_ids(self, i: int) -> list[int | None]:
        return self.rows[i]


@pytest.mark.parametrize("pooling", ["first", "last", "mean", "max"])
def test_words_mask_equals_reference(pooling: str) -> None:
    rng = np.random.default_rng(0)
    rows: list[list[int | None]] = []
    for _ in range(40):
        n_words = int(rng.integers(1, 12))
        ids: list[int | None] = [None]
        for w in range(n_words):
            if rng.random() < 0.1:
                continue  # a word that yields no subtoken (the reference counts transitions)
            ids += [w] * int(rng.integers(1, 4))
        ids.append(None)
        rows.append(ids)
    width = max(map(len, rows))
    rows = [r + [None] * (width - len(r)) for r in rows]
    skip = rng.integers(0, 4, size=len(rows))
    texts = [["w"] * 20 for _ in rows]
    ref = prepare_word_mask(texts, _FakeEncoding(rows), skip_first_words=list(skip), subtoken_pooling=pooling)
    arr = np.array([[-1 if w is None else w for w in r] for r in rows], dtype=np.int64)
    np.testing.assert_array_equal(words_mask(arr, skip, pooling), np.array(ref))


def test_span_idx_equals_reference() -> None:
    lengths, width = [5, 1, 3], 4
    idx = [prepare_span_idx(n, width) for n in lengths]
    padded = pad_sequence(idx, batch_first=True, padding_value=0)
    ends_ok = pad_sequence([i[:, 1] <= n - 1 for i, n in zip(idx, lengths)], batch_first=True)
    ref = (padded * ends_ok.unsqueeze(-1)).numpy()
    np.testing.assert_array_equal(span_idx(lengths, width), ref)
    assert span_idx(lengths, width).shape == (3, 5 * 4, 2)
    assert span_idx([2], 3).tolist() == [[[0, 0], [0, 1], [0, 0], [1, 1], [0, 0], [0, 0]]]
    with pytest.raises(ValueError, match="max_width"):
        span_idx([2], 0)


def test_subword_tokenizer_equals_hf(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    from gliner_onnx.export.demo import minilm_dir

    hf = AutoTokenizer.from_pretrained(minilm_dir())
    hf.add_tokens(["[FLERT]", "<<ENT>>", "<<SEP>>"], special_tokens=True)
    (tmp_path / "tokenizer.json").write_text(hf.backend_tokenizer.to_str())
    ours = SubwordTokenizer(
        tmp_path / "tokenizer.json", pad_token_id=hf.pad_token_id, pad_token=hf.pad_token, model_max_length=32
    )
    words = [
        build_prompt(["person", "big city"], "<<ENT>>", "<<SEP>>") + list(split_words(t).words) for t in TEXTS
    ]
    hf.model_max_length = 32
    ref = hf(words, is_split_into_words=True, truncation=True, padding="longest")
    got = ours.encode_words(words)
    np.testing.assert_array_equal(got.input_ids, np.array(ref["input_ids"]))
    np.testing.assert_array_equal(got.attention_mask, np.array(ref["attention_mask"]))
    ref_wids = [[-1 if w is None else w for w in ref.word_ids(i)] for i in range(len(words))]
    np.testing.assert_array_equal(got.word_ids, np.array(ref_wids))
    assert got.input_ids.shape[1] == 32  # truncated at model_max_length
    assert torch.tensor(got.input_ids).dtype == torch.int64


def test_subword_tokenizer_truncates_like_hf_and_copies_itself_only_then(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    from gliner_onnx.export.demo import minilm_dir

    hf = AutoTokenizer.from_pretrained(minilm_dir())
    hf.model_max_length = 16
    (tmp_path / "tokenizer.json").write_text(hf.backend_tokenizer.to_str())
    ours = SubwordTokenizer(
        tmp_path / "tokenizer.json", pad_token_id=hf.pad_token_id, pad_token=hf.pad_token, model_max_length=16
    )

    def assert_equal(got, ref) -> None:  # type: ignore[no-untyped-def]
        np.testing.assert_array_equal(got.input_ids, np.array(ref["input_ids"]))
        np.testing.assert_array_equal(got.attention_mask, np.array(ref["attention_mask"]))

    labels = ["person", "big city", "date of birth"]
    assert_equal(ours.encode_texts(labels), hf(labels, truncation=True, padding="longest"))
    # one tokenizer object (a DeBERTa-v3 vocabulary's is ~210 MB) until a sequence overflows
    assert ours._truncating is None
    long = [*labels, " ".join(["organization"] * 30)]
    got = ours.encode_texts(long)
    assert_equal(got, hf(long, truncation=True, padding="longest"))
    assert got.input_ids.shape == (4, 16) and ours._truncating is not None
    words = [["organization"] * 30, ["person"]]
    assert_equal(
        ours.encode_words(words), hf(words, is_split_into_words=True, truncation=True, padding="longest")
    )
    # planning counts every word's subwords, never truncated
    assert ours.word_costs(["organization"] * 30).tolist() == [1] * 30
