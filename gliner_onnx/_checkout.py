"""`runtime/` and `export/` as `gliner_onnx.runtime` and `gliner_onnx.export` in a source checkout.

The repository keeps the two stages at its top (`runtime/`, `export/`, beside `gliner_onnx/`). An
install (`pip install .`) copies them into the package (pyproject's `package-dir`), so there they
are plain subfolders and nothing here runs. Imported from the checkout (its folder shadows any
installed copy when the repository root is the working directory) or through an editable install
(setuptools' finder maps the package to the checkout's `gliner_onnx/`), the package's own folder
holds neither, and `gliner_onnx/__init__.py` calls `add_stages`.

Why a path entry and not the checkout root on `__path__`: the root also holds `tests/`,
`benchmarks/` and `gliner_onnx/` itself, which would all become submodules (a package walker then
lists the test suite, and `gliner_onnx.gliner_onnx.gliner_onnx...` recurses without end). Why not a
meta-path finder (what setuptools' editable finder is): it imports the two subpackages but
`pkgutil.iter_modules(gliner_onnx.__path__)`, which pydoc, Sphinx and plugin discovery walk, reads
only `__path__`, so they would vanish from every listing. One `__path__` entry whose finder knows
exactly the two names gives both: import and listing, nothing else. Below the two subpackages the
ordinary path finder takes over (their `__path__` is their own folder). Why not symlinks
`gliner_onnx/runtime -> ../runtime`: a Windows checkout without symlink support gets text files
in their place, and ruff, mypy and coverage would see every module of the two stages twice.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator, MutableSequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

STAGES = ("runtime", "export")
# The `__path__` entry's name: `<checkout>/{runtime,export}`, not a directory, so that the
# standard file finder never claims it; `_finder` claims exactly the entries made here.
_ENTRY = "{runtime,export}"


class StageFinder:
    """Path entry finder of `<checkout>/{runtime,export}`: finds and lists the two stages."""

    def __init__(self, checkout: Path, package: str) -> None:
        self.checkout = checkout
        self.package = package

    def find_spec(self, fullname: str, target: ModuleType | None = None) -> ModuleSpec | None:
        parent, _, name = fullname.rpartition(".")
        if parent != self.package or name not in STAGES:
            return None
        folder = self.checkout / name
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )

    def iter_modules(self, prefix: str = "") -> Iterator[tuple[str, bool]]:
        """What `pkgutil.iter_modules` lists for this entry: the two stages, both packages."""
        for name in STAGES:
            yield prefix + name, True

    def invalidate_caches(self) -> None:
        pass


_finders: dict[str, StageFinder] = {}


def _finder(entry: str) -> StageFinder:
    """The path hook: claims only the entries `add_stages` made."""
    if entry not in _finders:
        raise ImportError(f"not a {__name__} entry: {entry!r}")
    return _finders[entry]


def add_stages(package_path: MutableSequence[str], package: str, checkout: Path) -> None:
    """Make `<package>.runtime` / `<package>.export` the checkout's `runtime/` / `export/`."""
    entry = str(checkout / _ENTRY)
    _finders[entry] = StageFinder(checkout, package)
    if _finder not in sys.path_hooks:
        sys.path_hooks.append(_finder)
    sys.path_importer_cache.pop(entry, None)
    if entry not in package_path:
        package_path.append(entry)
