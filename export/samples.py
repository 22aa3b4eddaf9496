"""Texts and labels used to trace and validate every graph (and to check tokenizers), and
the corpus of varied text (package data: `data/corpus.txt`).

The corpus is the int8 / fp16 agreement corpus (with `LONG`), the demo's calibration text
and the training text of the demo decoder's tokenizer: its bytes are pinned by a test, as
recorded agreements and demo checkpoints depend on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

CORPUS_FILE = Path(__file__).with_name("data") / "corpus.txt"

SHORT = "Angela Merkel met Emmanuel Macron in Paris."
MEDIUM = (
    "On 3 March 2021, the e-mail from Dr. José Álvarez (CEO of Acme-Corp) reached 東京タワー's "
    "press office at 9:45 a.m. — 2.5 hours late 😀; he didn't mind, and flew to São Paulo."
)
LONG = " ".join(
    [
        "Marie Curie was born in Warsaw in 1867 and moved to Paris, where she studied physics and",
        "mathematics at the Sorbonne. Together with Pierre Curie she discovered polonium and radium,",
        "and in 1903 she shared the Nobel Prize in Physics with Henri Becquerel. In 1911 she received",
        "a second Nobel Prize, in Chemistry, becoming the first person to win twice. During World War I",
        "she developed mobile X-ray units, the so-called petites Curies, which served field hospitals",
        "in France and Belgium. She founded the Radium Institute in Paris and a sister institute in",
        "Warsaw; her daughter Irène Joliot-Curie also won a Nobel Prize, in 1935. Marie Curie died in",
        "1934 at Passy, Haute-Savoie, of aplastic anaemia caused by years of exposure to radiation.",
        "Today the Maria Skłodowska-Curie Actions fund researchers across the European Union, and",
        "universities from Lublin to Lyon carry her name. 北京大学 and the Université Paris-Saclay",
        "cite her work; the asteroid 7000 Curie and the element curium (Cm, 96) honour her too.",
    ]
)
CASES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    ((SHORT,), ("person",)),
    (
        (MEDIUM, SHORT, LONG),
        ("person", "organization", "location", "date", "award", "chemical element", "city"),
    ),
    ((LONG,), ("person", "location")),
)
TRACE_TEXTS = ("Steve Jobs founded Apple in Cupertino.", "Berlin is the capital of Germany, 2024.")
TRACE_LABELS = ("person", "organization", "location")

# Relex checkpoints: the relation labels that go with each label set above (one, several,
# and none, so an empty relation prompt is traced and validated too).
_RELATIONS = {
    1: ("works for",),
    7: ("works for", "located in", "born in", "won"),
    2: (),
    3: ("founded", "located in"),
}


def relations_for(labels: Sequence[str]) -> tuple[str, ...]:
    return _RELATIONS.get(len(labels), ("related to",))


@cache
def corpus_text() -> str:
    """The corpus file: one text a line. Punctuation, hyphens, numbers, dates, URLs, accents,
    CJK, Korean, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, emoji (with skin tones,
    flags and variation selectors), currency and math symbols, tabs and runs of spaces."""
    return CORPUS_FILE.read_bytes().decode("utf-8")


def corpus_lines() -> list[str]:
    """The non-empty lines of the corpus."""
    return [line for line in corpus_text().splitlines() if line.strip()]
