"""gliner's torch-free word splitters: the same words and offsets, the same entities.

Each splitter is compared with gliner 0.2.29's own `WordsSplitter` on texts in its
language, then a model is run with it against gliner's inference. One export is made
with a library splitter (jieba) through the whole export path; the others reuse the
uni_deberta export with its manifest's rule changed (the graphs do not depend on it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from gliner.data_processing.tokenizer import WordsSplitter

from gliner_onnx import GLiNER
from gliner_onnx.errors import ExportError, ManifestError
from gliner_onnx.manifest import MANIFEST_NAME
from gliner_onnx.runtime.words import split_words

from .conftest import Checkpoint

# splitter -> (libraries it imports, texts in its language)
CASES: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "spacy": (
        ("spacy",),
        [
            "Apple's CEO  Tim Cook visited São Paulo!\n\tDon't e-mail x@y.com 😀  ",
            "Dr. Smith (Acme-Corp) paid $3.14 on 9/11/2021; U.S.A. rocks.",
        ],
    ),
    "jieba": (
        ("jieba3",),
        ["马云在杭州创立了阿里巴巴集团。", "2024年，Apple 在上海开了新店  北京大学的李教授也来了！"],
    ),
    "janome": (
        ("janome",),
        [
            "安倍晋三は山口県出身です。",
            "2024年、ソニーと任天堂が東京タワーで発表した",
        ],
    ),
    "mecab": (
        ("mecab",),
        [
            "삼성전자는 수원에 본사를 두고 있다.",
            "이순신 장군은 서울에서 태어났다. Apple도!",
        ],
    ),
    "hindi": (
        ("indicnlp",),
        [
            "भारत की राजधानी नई दिल्ली है।",
            "नरेंद्र मोदी ने 2024 में मुंबई का दौरा किया, ठीक?",
        ],
    ),
    "camel": (
        ("camel_tools",),
        [
            "ذهب محمد إلى المدرسة، في القاهرة!",
            "وُلد نجيب محفوظ في القاهرة عام ١٩١١م.",
        ],
    ),
    "universal": (
        ("langdetect", "spacy", "jieba3", "janome", "mecab", "indicnlp", "camel_tools"),
        [
            "马云在杭州创立了阿里巴巴集团。",
            "安倍晋三は山口県出身です。",
            "Angela Merkel met Emmanuel Macron in Paris.",
            "삼성전자는 수원에 본사를 두고 있다.",
            "भारत की राजधानी नई दिल्ली है।",
            "ذهب محمد إلى المدرسة، في القاهرة!",
            "123 😀",
        ],
    ),
}
LABELS = ["person", "organization", "location", "date"]


def _require(name: str) -> None:
    for module in CASES[name][0]:
        pytest.importorskip(module)


@pytest.mark.parametrize("name", list(CASES))
def test_words_and_offsets_equal_glinerss(name: str) -> None:
    _require(name)
    reference = WordsSplitter(name)
    for text in CASES[name][1]:
        words = split_words(text, name)
        assert list(zip(words.words, words.starts, words.ends)) == list(reference(text))
        assert all(text[s:e] == w for w, s, e in zip(words.words, words.starts, words.ends))


@contextmanager
def _splitter(model: Any, name: str) -> Iterator[Any]:
    """The session's gliner model with another words splitter, restored after."""
    old_type, old = model.config.words_splitter_type, model.data_processor.words_splitter
    model.config.words_splitter_type = name
    model.data_processor.words_splitter = WordsSplitter(name)
    try:
        yield model
    finally:
        model.config.words_splitter_type, model.data_processor.words_splitter = old_type, old


def _same_entities(ours: list[list[dict[str, Any]]], ref: list[list[dict[str, Any]]]) -> None:
    assert len(ours) == len(ref)
    for got, want in zip(ours, ref):
        assert [(e["start"], e["end"], e["text"], e["label"]) for e in got] == [
            (e["start"], e["end"], e["text"], e["label"]) for e in want
        ]
        assert all(abs(a["score"] - b["score"]) <= 1e-4 for a, b in zip(got, want))


def test_jieba_export_matches_gliner(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    """The whole export path with a library splitter: recorded in the manifest, gliner's answers."""
    _require("jieba")
    from gliner_onnx.export import export_model

    with _splitter(uni_deberta.torch_model, "jieba") as model:
        export_model(model, tmp_path / "jieba", log=lambda _m: None)
        texts = CASES["jieba"][1]
        ref = model.inference(texts, LABELS, threshold=0.2)
    m = GLiNER.from_pretrained(tmp_path / "jieba")
    assert m.manifest.words_splitter == "jieba"
    assert sum(map(len, ref)) > 0
    _same_entities(m.inference(texts, LABELS, threshold=0.2), ref)


@pytest.fixture(scope="module")
def export_copy(uni_deberta: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copytree(uni_deberta.export_dir, tmp_path_factory.mktemp("splitters") / "export"))


def _with_rule(export: Path, name: str) -> GLiNER:
    path = export / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["words_splitter"] = name
    path.write_text(json.dumps(data))
    return GLiNER.from_pretrained(export)


@pytest.mark.parametrize("name", [n for n in CASES if n != "jieba"])
def test_model_with_splitter_matches_gliner(name: str, uni_deberta: Checkpoint, export_copy: Path) -> None:
    _require(name)
    m = _with_rule(export_copy, name)
    texts = CASES[name][1]
    with _splitter(uni_deberta.torch_model, name) as model:
        ref = model.inference(texts, LABELS, threshold=0.2)
    assert sum(map(len, ref)) > 0
    _same_entities(m.inference(texts, LABELS, threshold=0.2), ref)


@pytest.mark.parametrize(
    "name, why", [("hanlp", "HanLP's tokenizers are torch"), ("stanza", "Stanza's tokenizers are torch")]
)
def test_torch_splitters_are_refused_with_the_reason(
    name: str, why: str, uni_deberta: Checkpoint, export_copy: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=f"words splitter '{name}' is not supported: {why}"):
        split_words("x", name)
    with pytest.raises(ManifestError, match=f"words splitter '{name}' is not supported: {why}"):
        _with_rule(export_copy, name)
    from gliner_onnx.export import export_model

    model = uni_deberta.torch_model
    old = model.config.words_splitter_type
    model.config.words_splitter_type = name
    try:
        with pytest.raises(ExportError, match=f"words splitter '{name}' is not supported: {why}"):
            export_model(model, tmp_path / "o", log=lambda _m: None)
    finally:
        model.config.words_splitter_type = old


LIBRARIES = ("spacy", "jieba3", "janome", "mecab", "indicnlp", "camel_tools", "langdetect")


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in out.stdout.split()}


def test_a_splitter_library_is_imported_only_when_used() -> None:
    _require("janome")
    base = "from gliner_onnx.runtime.words import split_words\n"
    assert _modules_after(base + "split_words('Tokyo 東京', 'whitespace')") & set(LIBRARIES) == set()
    assert _modules_after(base + "split_words('東京タワー', 'janome')") & set(LIBRARIES) == {"janome"}


def test_universal_imports_the_detected_languages_library_only() -> None:
    _require("universal")
    code = "from gliner_onnx.runtime.words import split_words\n"
    code += "split_words('삼성전자는 수원에 있다.', 'universal')"
    assert _modules_after(code) & set(LIBRARIES) == {"langdetect", "mecab"}
