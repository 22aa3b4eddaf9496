"""Where a model comes from: a local directory, or a Hugging Face Hub repo resolved to one.

`resolve_model(path)` returns a local directory holding one of the two layouts the
runtime loads:

- **gliner-onnx**: `gliner_onnx.json` (the manifest) and the files it names;
- **gliner**: gliner's own `export_to_onnx` output: `gliner_config.json`, a tokenizer
  (`tokenizer.json`, plus `labels_tokenizer/` for bi-encoders) and one ONNX graph
  (`model.onnx` at the root or under `onnx/`, or the file named with `onnx_file=`).

A path that is not a local directory is a Hub repo id: `huggingface_hub` (the `hub`
extra, imported only then) downloads into its cache, or finds there with
`local_files_only=True` / `HF_HUB_OFFLINE=1`, only the files the runtime reads: the
manifest first, then the files it names (or, for gliner's layout, its config, tokenizer
files and the one graph).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gliner_onnx.errors import HubError, ManifestError
from gliner_onnx.manifest import MANIFEST_NAME

GLINER_CONFIG = "gliner_config.json"
ONNX_CANDIDATES = ("model.onnx", "onnx/model.onnx")
# Tokenizer files of gliner's layout: tokenizer.json is the one the runtime needs;
# the others are read when present (added tokens, model_max_length).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
_LABELS_TOKENIZER = "labels_tokenizer"


def directory_layout(directory: Path) -> str | None:
    """'gliner-onnx', 'gliner' or None for a local directory."""
    if (directory / MANIFEST_NAME).is_file():
        return "gliner-onnx"
    if (directory / GLINER_CONFIG).is_file():
        return "gliner"
    return None


def onnx_candidates(onnx_file: str | None) -> tuple[str, ...]:
    """Where gliner's layout may hold its graph, in the order they are tried."""
    if onnx_file is None:
        return ONNX_CANDIDATES
    if Path(onnx_file).is_absolute() or ".." in Path(onnx_file).parts:
        raise ValueError(f"onnx_file {onnx_file!r} must be a path relative to the model directory")
    if "/" in onnx_file:
        return (onnx_file,)
    return (onnx_file, f"onnx/{onnx_file}")


def _looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or Path(path).exists() or "\\" in path or path.count("/") > 1


def resolve_model(
    path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    onnx_file: str | None = None,
) -> Path:
    """The local directory of `path`: itself when it is one, else a Hub repo's snapshot."""
    if isinstance(path, Path) or Path(path).is_dir() or _looks_local(str(path)):
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise ManifestError(
                f"{directory} is not a directory (expected a gliner-export output directory, "
                "a gliner ONNX directory or a Hub repo id such as 'org/name')"
            )
        return directory
    return _HubRepo(str(path), revision, cache_dir, token, local_files_only).fetch(onnx_file)


def fetch_tokenizer(repo_id: str, **hub_kwargs: Any) -> Path:
    """A plain tokenizer repo (a bi-encoder's labels encoder named by its Hub id): its
    tokenizer.json and the files beside it that set the pad token and length limit."""
    repo = _HubRepo(
        repo_id,
        hub_kwargs.get("revision"),
        hub_kwargs.get("cache_dir"),
        hub_kwargs.get("token"),
        bool(hub_kwargs.get("local_files_only", False)),
    )
    path = repo.get("tokenizer.json")
    for name in _TOKENIZER_FILES[1:]:
        repo.get(name, required=False)
    assert path is not None
    return path.parent


class _HubRepo:
    """One repo at one revision, fetched file by file through huggingface_hub."""

    def __init__(
        self,
        repo_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        token: str | bool | None,
        local_files_only: bool,
    ):
        try:
            import huggingface_hub
            from huggingface_hub import constants, errors
        except ImportError as e:
            raise HubError(
                f"{repo_id!r} is not a local directory, and loading it from the Hugging Face Hub "
                "needs huggingface_hub: pip install 'gliner-onnx[hub]'"
            ) from e
        self.hub: Any = huggingface_hub
        self.errors: Any = errors
        self.repo_id = repo_id
        self.kw: dict[str, Any] = {
            "revision": revision,
            "cache_dir": None if cache_dir is None else str(cache_dir),
            "token": token,
            "local_files_only": local_files_only,
        }
        self.where = f"Hub repo {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
        self.constants: Any = constants
        self.offline = local_files_only or bool(constants.HF_HUB_OFFLINE)

    def fetch(self, onnx_file: str | None) -> Path:
        manifest = self.get(MANIFEST_NAME, required=False)
        if manifest is not None:
            root = manifest.parent
            for name in _manifest_files(manifest):
                self.get(name)
            return root
        config = self.get(GLINER_CONFIG, required=False)
        if config is None:
            raise HubError(
                f"{self.where} holds neither a gliner-onnx export ({MANIFEST_NAME}) nor gliner's ONNX "
                f"layout ({GLINER_CONFIG}, a tokenizer and model.onnx or onnx/model.onnx)"
                + (" (or they are not in the Hub cache: offline)" if self.offline else "")
            )
        self.get("tokenizer.json")
        for name in _TOKENIZER_FILES[1:]:
            self.get(name, required=False)
        if _config_has_labels_encoder(config):
            for name in _TOKENIZER_FILES:
                self.get(f"{_LABELS_TOKENIZER}/{name}", required=name != _TOKENIZER_FILES[0])
        self._get_graph(onnx_file)
        return config.parent

    def _get_graph(self, onnx_file: str | None) -> Path:
        candidates = onnx_candidates(onnx_file)
        for name in candidates:
            graph = self.get(name, required=False)
            if graph is not None:
                for data in (f"{name}_data", f"{name}.data"):  # external weights, if any
                    self.get(data, required=False)
                return graph
        raise HubError(
            f"{self.where} has {GLINER_CONFIG} but no ONNX graph at {' or '.join(candidates)}"
            + ("" if onnx_file else " (pass onnx_file= to name another, e.g. 'model_quantized.onnx')")
        )

    def get(self, filename: str, *, required: bool = True) -> Path | None:
        """The cached path of one file; None when it is optional and absent."""
        e = self.errors
        download: Callable[..., str] = self.hub.hf_hub_download
        try:
            return Path(download(self.repo_id, filename, **self.kw))
        except e.HFValidationError as err:
            raise HubError(
                f"{self.repo_id!r} is neither a local directory nor a valid Hub repo id: {err}"
            ) from err
        except e.GatedRepoError as err:
            raise HubError(f"{self.where} is gated: accept its terms on the Hub and pass token=") from err
        except e.RepositoryNotFoundError as err:
            raise HubError(
                f"{self.repo_id!r} is not a local directory, and {self.where} does not exist "
                "(or is private: pass token=, or log in with `hf auth login`)"
            ) from err
        except e.RevisionNotFoundError as err:
            raise HubError(f"{self.where}: no such revision") from err
        except e.EntryNotFoundError as err:  # remote: no such file; local: not in the cache
            if isinstance(err, e.LocalEntryNotFoundError) and not self._cached():
                why = (
                    "while downloading is off (local_files_only=True or HF_HUB_OFFLINE=1)"
                    if self.offline
                    else "and the Hub could not be reached"
                )
                raise HubError(
                    f"{self.repo_id!r} is not a local directory, and {self.where} is not in the Hub "
                    f"cache {why}"
                ) from err
            if not required:
                return None
            raise HubError(
                f"{self.where} has no file {filename!r}"
                + (" in the Hub cache (offline)" if isinstance(err, e.LocalEntryNotFoundError) else "")
            ) from err
        except e.HfHubHTTPError as err:
            raise HubError(f"{self.where}: download of {filename!r} failed: {err}") from err

    def _cached(self) -> bool:
        """Whether the cache holds anything of this repo (offline: tells a missing repo apart)."""
        from huggingface_hub.file_download import repo_folder_name

        cache = Path(self.kw["cache_dir"] or self.constants.HF_HUB_CACHE)
        return (cache / repo_folder_name(repo_id=self.repo_id, repo_type="model")).is_dir()


def _manifest_files(manifest: Path) -> list[str]:
    """The file names a manifest lists (graphs, their external data, tokenizers)."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        names = [g["file"] for g in data["graphs"].values()]
        names += [g["data_file"] for g in data["graphs"].values() if g.get("data_file")]
        names += [t["file"] for t in data["tokenizers"].values()]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ManifestError(f"{manifest} is not a valid gliner-onnx manifest: {e}") from e
    for name in names:
        if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
            raise ManifestError(f"{manifest}: file name {name!r} must be relative to the export directory")
    return names


def _config_has_labels_encoder(config: Path) -> bool:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{config} is not valid JSON: {e}") from e
    return isinstance(data, dict) and data.get("labels_encoder") is not None
