"""A Hugging Face Hub cache written on disk in huggingface_hub's own layout.

`models--{org}--{name}/blobs/<sha256>`, `snapshots/<commit>/<path>` (relative symlinks
to the blobs) and `refs/<revision>` (the commit), as `hf_hub_download` leaves it, so
that the real client reads it with the network off.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def commit_hash(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def add_snapshot(
    cache: Path,
    repo_id: str,
    files: dict[str, Path | bytes],
    *,
    commit: str,
    refs: Iterable[str] = ("main",),
) -> Path:
    """Put `files` (repo path -> source file or content) in the cache as one commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def directory_files(directory: Path, skip: Iterable[str] = ()) -> dict[str, Path]:
    """Every file under `directory` by its relative path (posix), less `skip`."""
    skipped = set(skip)
    return {
        p.relative_to(directory).as_posix(): p
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.relative_to(directory).as_posix() not in skipped
    }
