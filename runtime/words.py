"""Stage 1: split a text into words with character offsets.

gliner 0.2.29's word splitters (`data_processing/tokenizer.py`, `WordsSplitter`), the
manifest's `words_splitter` naming which; offsets are Python string indices, `end`
exclusive:

- `whitespace` (default, no library): `re.finditer(r"\\w+(?:[-_]\\w+)*|\\S", text)`.
- `spacy`: `spacy.blank("en")`'s tokenizer (its whitespace tokens are words too);
- `jieba`: `jieba3.jieba3().cut_text` (gliner checks for `jieba`, then calls `jieba3`);
- `janome`: `janome.tokenizer.Tokenizer().tokenize(text, wakati=True)` (Japanese);
- `mecab`: python-mecab-ko's `mecab.MeCab().morphs` (Korean: gliner's `MecabKoTokenSplitter`);
- `hindi`: Indic NLP's `trivial_tokenize(text, lang="hi")`;
- `camel`: CAMeL Tools' `simple_word_tokenize` (Arabic; camel-tools requires torch as a
  package, its word tokenizer does not: `pip install --no-deps camel-tools emoji regex`);
- `universal`: `langdetect.detect` (seed 0) picks the language's splitter (ko, ja, hi,
  zh / zh-cn / zh-tw, ar), else `spacy.blank("xx")`; a text langdetect cannot place also
  goes to spacy. Unlike gliner, only the detected language's library is imported.

Library splitters place each token with gliner's `text.find(token, last_end)` (Hindi:
`re.search`, a token not found is skipped), so offsets are gliner's exactly. Each
library is imported on first use only. `hanlp` and `stanza` run torch models: refused.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from gliner_onnx.manifest import REFUSED_SPLITTERS, WORD_SPLITTERS

_WHITESPACE_PATTERN = re.compile(r"\w+(?:[-_]\w+)*|\S")

Token = tuple[str, int, int]
Splitter = Callable[[str], Iterable[Token]]

# name -> (pip package(s), what it is for)
LIBRARY_SPLITTERS: dict[str, tuple[str, str]] = {
    "spacy": ("spacy", "spaCy's blank English tokenizer"),
    "jieba": ("jieba3", "Chinese"),
    "janome": ("janome", "Japanese"),
    "mecab": ("python-mecab-ko", "Korean"),
    "hindi": ("indic-nlp-library", "Hindi"),
    "camel": ("camel-tools (pip install --no-deps camel-tools emoji regex: no torch)", "Arabic"),
    "universal": ("langdetect, plus the detected language's splitter", "language detection"),
    "spacy-xx": ("spacy", "universal's fallback"),
}
SUPPORTED_SPLITTERS = WORD_SPLITTERS  # the manifest's names: "whitespace" and the library ones


@dataclass(frozen=True)
class Words:
    """The words of one text and their character offsets (`end` exclusive)."""

    words: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.words)


def check_splitter(name: str) -> None:
    """A `ValueError` saying why when `name` is not a splitter the runtime runs."""
    if name in SUPPORTED_SPLITTERS:
        return
    if name in REFUSED_SPLITTERS:
        raise ValueError(
            f"words splitter {name!r} is not supported: {REFUSED_SPLITTERS[name]}, and the runtime "
            "is torch-free"
        )
    raise ValueError(f"unsupported words splitter {name!r} (supported: {', '.join(SUPPORTED_SPLITTERS)})")


def split_words(text: str, splitter: str = "whitespace") -> Words:
    """Split `text` the way the reference's word splitter does."""
    if splitter == "whitespace":
        tokens: Iterable[Token] = (
            (m.group(), m.start(), m.end()) for m in _WHITESPACE_PATTERN.finditer(text)
        )
    else:
        check_splitter(splitter)
        tokens = library_splitter(splitter)(text)
    words: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for word, start, end in tokens:
        words.append(word)
        starts.append(start)
        ends.append(end)
    return Words(tuple(words), tuple(starts), tuple(ends))


def _located(text: str, tokens: Iterable[str]) -> Iterator[Token]:
    """gliner's placement of a library's tokens: each found from the previous token's end."""
    last = 0
    for token in tokens:
        start = text.find(token, last)
        end = start + len(token)
        last = end
        yield token, start, end


_lock = threading.Lock()


@cache
def _load(name: str) -> Splitter:
    try:
        return _BUILDERS[name]()
    except ImportError as e:
        package, what = LIBRARY_SPLITTERS[name]
        raise ImportError(
            f"the model splits words with {name!r} ({what}), which needs {package}: "
            f"pip install 'gliner-onnx[splitters]' ({e})"
        ) from e


def library_splitter(name: str) -> Splitter:
    """The splitter function of a library splitter, built (and its library imported) once."""
    with _lock:
        return _load(name)


def _spacy(lang: str) -> Splitter:
    import spacy

    nlp = spacy.blank(lang)

    def split(text: str) -> Iterator[Token]:
        for token in nlp(text):
            yield token.text, token.idx, token.idx + len(token.text)

    return split


def _jieba() -> Splitter:
    import jieba3  # gliner 0.2.29 checks that `jieba` is installed, then runs jieba3

    tagger = jieba3.jieba3()
    return lambda text: _located(text, tagger.cut_text(text))


def _janome() -> Splitter:
    from janome.tokenizer import Tokenizer

    tokenizer = Tokenizer()
    return lambda text: _located(text, (str(t) for t in tokenizer.tokenize(text, wakati=True)))


def _mecab() -> Splitter:
    import mecab

    tagger = mecab.MeCab()
    return lambda text: _located(text, tagger.morphs(text))


def _hindi() -> Splitter:
    from indicnlp.tokenize import indic_tokenize

    def split(text: str) -> Iterator[Token]:
        last = 0
        for token in indic_tokenize.trivial_tokenize(text, lang="hi"):
            match = re.search(re.escape(token), text[last:])
            if match is None:
                continue
            start = last + match.start()
            last = start + len(token)
            yield token, start, last

    return split


def _camel() -> Splitter:
    from camel_tools.tokenizers.word import simple_word_tokenize

    return lambda text: _located(text, simple_word_tokenize(text))


_UNIVERSAL_LANGS = {"ko": "mecab", "ja": "janome", "hi": "hindi", "zh-cn": "jieba", "zh-tw": "jieba"}
_UNIVERSAL_LANGS.update({"zh": "jieba", "ar": "camel"})


def _universal() -> Splitter:
    from langdetect import DetectorFactory, detect
    from langdetect.detector_factory import init_factory
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0  # as gliner sets it (a global of langdetect)
    init_factory()  # load the profiles now: detect() would do it lazily, racing between threads

    def split(text: str) -> Iterable[Token]:
        try:
            lang: Any = detect(text)
        except LangDetectException:
            lang = None
        name = _UNIVERSAL_LANGS.get(lang)
        return library_splitter(name or "spacy-xx")(text)

    return split


_BUILDERS: dict[str, Callable[[], Splitter]] = {
    "spacy": lambda: _spacy("en"),
    "jieba": _jieba,
    "janome": _janome,
    "mecab": _mecab,
    "hindi": _hindi,
    "camel": _camel,
    "universal": _universal,
    "spacy-xx": lambda: _spacy("xx"),  # universal's fallback: spaCy's blank multi-language tokenizer
}
