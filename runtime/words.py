"""Stage 1: split a text into words with character offsets.

gliner 0.2.29's default `whitespace` splitter (`data_processing/tokenizer.py`,
`WhitespaceTokenSplitter`): `re.finditer(r"\\w+(?:[-_]\\w+)*|\\S", text)` with the
Unicode-aware `re` module. Offsets are Python string indices; `end` is exclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WHITESPACE_PATTERN = re.compile(r"\w+(?:[-_]\w+)*|\S")


@dataclass(frozen=True)
class Words:
    """The words of one text and their character offsets (`end` exclusive)."""

    words: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.words)


def split_words(text: str, splitter: str = "whitespace") -> Words:
    """Split `text` the way the reference's word splitter does."""
    if splitter != "whitespace":
        raise ValueError(f"unsupported words splitter {splitter!r} (supported: 'whitespace')")
    words: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for m in _WHITESPACE_PATTERN.finditer(text):
        words.append(m.group())
        starts.append(m.start())
        ends.append(m.end())
    return Words(tuple(words), tuple(starts), tuple(ends))
