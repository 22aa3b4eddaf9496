"""Hub loading through the real huggingface_hub, network off, from a cache laid out on disk.

conftest sets HF_HUB_OFFLINE=1 before anything imports huggingface_hub; the subprocess
tests turn it off and rely on local_files_only=True alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gliner_onnx import GLiNER
from gliner_onnx.errors import HubError, ManifestError
from gliner_onnx.manifest import MANIFEST_NAME
from gliner_onnx.runtime.hub import resolve_model

from .conftest import LABELS, TEXTS, Checkpoint
from .hub_cache import add_snapshot, commit_hash, directory_files

REPO = "tiny-org/gliner-deberta-onnx"


@pytest.fixture(scope="module")
def hub_cache(uni_deberta: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our export at two commits (main and tag v1), plus foreign repos, in one cache."""
    cache = tmp_path_factory.mktemp("hub-cache")
    files = directory_files(Path(uni_deberta.export_dir))
    add_snapshot(cache, REPO, files, commit=commit_hash("v1"), refs=("v1",))
    add_snapshot(cache, REPO, files, commit=commit_hash("main"))
    # a repo that lost a graph file, one that holds neither layout, gliner's layout
    broken = {k: v for k, v in files.items() if k != "scorer.onnx"}
    add_snapshot(cache, "tiny-org/broken", broken, commit=commit_hash("broken"))
    add_snapshot(cache, "tiny-org/weights-only", {"pytorch_model.bin": b"0"}, commit=commit_hash("w"))
    gliner_files: dict[str, Path | bytes] = {
        "gliner_config.json": b'{"span_mode": "markerV0", "labels_encoder": null}',
        "tokenizer.json": b"{}",
        "tokenizer_config.json": b"{}",
        "onnx/model.onnx": b"graph",
        "onnx/model_quantized.onnx": b"int8 graph",
    }
    add_snapshot(cache, "tiny-org/gliner-layout", gliner_files, commit=commit_hash("g"))
    no_graph = {k: v for k, v in gliner_files.items() if not k.startswith("onnx/")}
    add_snapshot(cache, "tiny-org/gliner-no-graph", no_graph, commit=commit_hash("ng"))
    return cache


def test_network_is_off() -> None:
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE


def test_export_loads_from_the_hub_cache(hub_cache: Path, uni_deberta: Checkpoint) -> None:
    m = GLiNER.from_pretrained(REPO, cache_dir=hub_cache)
    assert m.directory == hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit_hash("main")
    local = GLiNER.from_pretrained(uni_deberta.export_dir)
    assert m.inference(TEXTS, LABELS, threshold=0.3) == local.inference(TEXTS, LABELS, threshold=0.3)


def test_revision(hub_cache: Path) -> None:
    path = resolve_model(REPO, cache_dir=hub_cache, revision="v1")
    assert path.name == commit_hash("v1")
    assert resolve_model(REPO, cache_dir=hub_cache, revision=commit_hash("v1")) == path
    with pytest.raises(HubError, match=r"revision 'v2'"):
        resolve_model(REPO, cache_dir=hub_cache, revision="v2")


def test_only_the_files_the_runtime_reads(hub_cache: Path, uni_deberta: Checkpoint) -> None:
    """A snapshot with the manifest and the files it names (no card, nothing else) loads."""
    export = Path(uni_deberta.export_dir)
    manifest = json.loads((export / MANIFEST_NAME).read_text())
    needed = [MANIFEST_NAME] + [g["file"] for g in manifest["graphs"].values()]
    needed += [g["data_file"] for g in manifest["graphs"].values() if g.get("data_file")]
    needed += [t["file"] for t in manifest["tokenizers"].values()]
    assert len(directory_files(export)) > len(needed)  # the card at least is left out
    add_snapshot(hub_cache, "tiny-org/minimal", {n: export / n for n in needed}, commit=commit_hash("min"))
    m = GLiNER.from_pretrained("tiny-org/minimal", cache_dir=hub_cache)
    assert m.predict_entities(TEXTS[0], LABELS, threshold=0.0)


def test_gliner_layout_files(hub_cache: Path) -> None:
    path = resolve_model("tiny-org/gliner-layout", cache_dir=hub_cache)
    assert (path / "gliner_config.json").is_file() and (path / "onnx/model.onnx").is_file()
    resolve_model("tiny-org/gliner-layout", cache_dir=hub_cache, onnx_file="model_quantized.onnx")
    with pytest.raises(HubError, match=r"no ONNX graph at model_int4\.onnx or onnx/model_int4\.onnx"):
        resolve_model("tiny-org/gliner-layout", cache_dir=hub_cache, onnx_file="model_int4.onnx")
    with pytest.raises(HubError, match=r"no ONNX graph at model\.onnx or onnx/model\.onnx"):
        resolve_model("tiny-org/gliner-no-graph", cache_dir=hub_cache)


def test_errors(hub_cache: Path) -> None:
    with pytest.raises(HubError, match=r"'tiny-org/absent' is not a local .* not in the Hub cache"):
        GLiNER.from_pretrained("tiny-org/absent", cache_dir=hub_cache)
    with pytest.raises(HubError, match=r"has no file 'scorer\.onnx' in the Hub cache"):
        GLiNER.from_pretrained("tiny-org/broken", cache_dir=hub_cache)
    with pytest.raises(HubError, match=r"holds neither a gliner-onnx export .* nor gliner's ONNX layout"):
        GLiNER.from_pretrained("tiny-org/weights-only", cache_dir=hub_cache)
    with pytest.raises(HubError, match=r"neither a local directory nor a valid Hub repo id"):
        GLiNER.from_pretrained("not a/repo id!", cache_dir=hub_cache)
    with pytest.raises(ManifestError, match=r"is not a directory"):
        GLiNER.from_pretrained("./no/such/dir")


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full)


def test_local_files_only_with_the_network_flag_on(hub_cache: Path) -> None:
    """HF_HUB_OFFLINE unset: local_files_only=True alone keeps huggingface_hub off the network."""
    code = (
        "import sys\nfrom gliner_onnx import GLiNER\n"
        f"m = GLiNER.from_pretrained({REPO!r}, cache_dir={str(hub_cache)!r}, local_files_only=True)\n"
        "print(m.directory.name, 'huggingface_hub' in sys.modules, 'torch' in sys.modules)"
    )
    out = _run(code, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [commit_hash("main"), "True", "False"]


def test_cli_takes_a_repo_id(hub_cache: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}
    cli = "from gliner_onnx.cli import main; import sys; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run(
        [sys.executable, "-c", cli, "predict", REPO, "--labels", "person", "--threshold", "0", TEXTS[0]],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["entities"]
    info = subprocess.run(
        [sys.executable, "-c", cli, "info", REPO, "--revision", "v1"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert info.returncode == 0 and "arch: uniencoder_span" in info.stdout, info.stderr
    absent = subprocess.run(
        [sys.executable, "-c", cli, "info", "tiny-org/absent"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert absent.returncode == 1 and "not in the Hub cache" in absent.stderr


def test_model_card(uni_deberta: Checkpoint) -> None:
    """Every export has a README.md whose metadata the Hub's own parser reads."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(Path(uni_deberta.export_dir) / "README.md")
    assert card.data.library_name == "gliner-onnx"
    assert {"gliner", "onnx", "uniencoder_span", "fp32"} <= set(card.data.tags)
    assert card.data.base_model is None  # a local checkpoint directory names no Hub model
    assert "end_to_end" not in card.text and "max abs diff" in card.text
    assert "`text_encoder`" in card.text and "`scorer`" in card.text
