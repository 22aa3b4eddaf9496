"""Replacing an attribute of another library while the export calls it.

The export changes how torch's tracer, ONNX Runtime's quantizer and onnx's fp16 converter do one
thing each (`memory.py`, `precision/`, `relation_wrappers.py`), only around its own calls:
`replaced` puts the original back however the call ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """Within: `owner.<name>` is `value`; the original is put back on exit."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)
