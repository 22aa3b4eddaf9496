"""Released checkpoints' published `gliner_config.json`, verbatim, as test checkpoints.

Each fixture in `release_configs/` holds one release's config exactly as published, and
where it was read (`read_from`: repository or page, path, commit). The checkpoint built
from it keeps that config word for word except `model_name`, which names a local tiny
DeBERTa-v3 instead of the hub backbone; its heads are random (calibrated so that scores
spread), and it has no tokenizer files where the release has none (gliner then loads the
backbone's tokenizer and adds its special tokens, as it does for those releases). It must
load in gliner 0.2.29 as the class that version gives it, export with that arch, and
answer as gliner does (releases whose configs differ only in what training reads build the
same test model: the first of them is exported for all). The README's "Released
checkpoints" table is checked against the fixtures: each release has a row naming its arch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gliner_onnx import GLiNER
from gliner_onnx.export.detect import detect_arch
from gliner_onnx.manifest import load_manifest
from gliner_onnx.runtime.output import merge_adjacent_entities

from .conftest import LOGIT_STD
from .test_parity import assert_same

FIXTURE_DIR = Path(__file__).parent / "release_configs"
FIXTURES = sorted(p.stem for p in FIXTURE_DIR.glob("*.json"))
README = Path(__file__).parent.parent / "README.md"

# What gliner 0.2.29 makes of each config (`GLiNER._get_gliner_class`), and the span head
# the export gives it (the factorized head needs gliner's markerV0 span layer).
EXPECTED = {
    "urchade__gliner_base": ("uniencoder_span", "generic"),  # span_mode marker
    "urchade__gliner_large-v1": ("uniencoder_span", "factorized"),
    "urchade__gliner_large-v2.1": ("uniencoder_span", "factorized"),
    "urchade__gliner_medium-v2.1": ("uniencoder_span", "factorized"),
    "urchade__gliner_multi-v2.1": ("uniencoder_span", "factorized"),
    "urchade__gliner_multi_pii-v1": ("uniencoder_span", "factorized"),
    "numind__NuNER_Zero": ("uniencoder_span", "generic"),  # span_mode marker, max_width 1
    "knowledgator__gliner-multitask-large-v0.5": ("uniencoder_token", "generic"),
}
GLINER_CLASSES = {
    "UniEncoderSpanGLiNER": "uniencoder_span",
    "UniEncoderTokenGLiNER": "uniencoder_token",
    "BiEncoderSpanGLiNER": "biencoder_span",
    "BiEncoderTokenGLiNER": "biencoder_token",
}
TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris on 3 March 2021.",
    "Apple's CEO Tim Cook visited 東京 with José Álvarez, then flew to São Paulo.",
]
LABELS = ["person", "organization", "location", "date"]
# Calibrating on calibrate_head's 30 built-in sentences took most of the build at these widths.
CALIBRATION_TEXTS = [*TEXTS, "Marie Curie won the Nobel Prize twice and was born in Warsaw."]
# Keys that only training reads (and `model_name`, swapped for the tiny backbone; `dropout`,
# off in eval): releases whose configs differ only in these build the same test model, and
# only the first of them is exported.
TRAINING_ONLY = {
    "model_name", "dropout", "lr_encoder", "lr_others", "num_steps", "warmup_ratio", "train_batch_size",
    "eval_every", "gradient_accumulation_steps", "size_sup", "max_types", "shuffle_types", "random_drop",
    "max_neg_type_ratio", "name", "root_dir", "train_data", "prev_path", "gpu", "run_time", "log_dir",
}  # fmt: skip
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "spm.model",
)


def _card_merge_entities(text: str, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NuNER Zero's model card's `merge_entities`, as published (dicts copied first)."""
    entities = [dict(e) for e in entities]
    if not entities:
        return []
    merged = []
    current = entities[0]
    for next_entity in entities[1:]:
        if next_entity["label"] == current["label"] and (
            next_entity["start"] == current["end"] + 1 or next_entity["start"] == current["end"]
        ):
            current["text"] = text[current["start"] : next_entity["end"]].strip()
            current["end"] = next_entity["end"]
        else:
            merged.append(current)
            current = next_entity
    merged.append(current)
    return merged


def _ent(text: str, word: str, label: str, score: float, after: int = 0) -> dict[str, Any]:
    start = text.index(word, after)
    return {"start": start, "end": start + len(word), "text": word, "label": label, "score": score}


def test_merge_adjacent_is_the_nuner_cards_merge() -> None:
    text = "Tim Cook met Tim-Berners Lee, Paris,London and New  York."
    cases = [
        [],
        [_ent(text, "Tim", "person", 0.9)],
        # joined across one space, a hyphen and a comma; two spaces are not joined
        [_ent(text, "Tim", "person", 0.9), _ent(text, "Cook", "person", 0.6)],
        [
            _ent(text, "Tim", "person", 0.7, 10),
            _ent(text, "-", "person", 0.8),
            _ent(text, "Berners", "person", 0.5),
        ],
        [
            _ent(text, "Paris", "location", 0.5),
            _ent(text, ",", "location", 0.6, 35),
            _ent(text, "London", "location", 0.9),
        ],
        [_ent(text, "New", "location", 0.5), _ent(text, "York", "location", 0.6)],
        # a label change or a word between stops a merge
        [
            _ent(text, "Tim", "person", 0.9),
            _ent(text, "Cook", "organization", 0.6),
            _ent(text, "met", "organization", 0.4),
        ],
        [_ent(text, "Tim", "person", 0.9), _ent(text, "met", "person", 0.6)],
    ]
    for entities in cases:
        before = [dict(e) for e in entities]
        got = merge_adjacent_entities(text, entities)
        assert got == _card_merge_entities(text, entities)
        assert entities == before  # not modified
    joined = merge_adjacent_entities(text, cases[2])
    assert joined == [{"start": 0, "end": 8, "text": "Tim Cook", "label": "person", "score": 0.9}]


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURE_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _model_keys(name: str) -> dict[str, Any]:
    data = _fixture(name)
    kept = {k: v for k, v in data["gliner_config"].items() if k not in TRAINING_ONLY}
    return {**kept, "tokenizer_in_repo": data["tokenizer_in_repo"]}


def _distinct() -> list[str]:
    seen: list[dict[str, Any]] = []
    out = []
    for name in FIXTURES:
        if _model_keys(name) not in seen:
            seen.append(_model_keys(name))
            out.append(name)
    return out


EXPORTED = _distinct()


def test_fixtures_not_exported_build_an_exported_model() -> None:
    for name in FIXTURES:
        twin = next(e for e in EXPORTED if _model_keys(e) == _model_keys(name))
        assert EXPECTED[twin] == EXPECTED[name], name


def test_every_fixture_names_where_its_config_was_read() -> None:
    assert sorted(EXPECTED) == FIXTURES
    for name in FIXTURES:
        data = _fixture(name)
        assert set(data) <= {"release", "read_from", "tokenizer_in_repo", "note", "gliner_config"}, name
        assert data["release"].replace("/", "__") == name
        where = data["read_from"]
        assert len(where["commit"]) == 40 and ("repo" in where or "url" in where), name
        assert isinstance(data["tokenizer_in_repo"], bool)
        assert isinstance(data["gliner_config"]["model_name"], str)


@pytest.mark.parametrize("name", FIXTURES)
def test_detection_follows_gliner(name: str) -> None:
    from gliner import GLiNER as TorchGLiNER
    from gliner import GLiNERConfig

    config = _fixture(name)["gliner_config"]
    cls = TorchGLiNER._get_gliner_class(GLiNERConfig(**config))
    assert GLINER_CLASSES[cls.__name__] == detect_arch(config) == EXPECTED[name][0]


def test_readme_table_rows_agree_with_the_fixtures() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Released checkpoints", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    for name in FIXTURES:
        release = _fixture(name)["release"]
        org, repo = release.split("/")
        mine = [r for r in rows if f"`{release}`" in r or (org in r and f"`{repo}`" in r)]
        assert len(mine) == 1, f"{release}: {len(mine)} README rows"
        assert f"`{EXPECTED[name][0]}`" in mine[0], mine[0]


def _build(name: str, backbone: Path, out: Path, seed: int) -> Path:
    """The release's checkpoint with the tiny backbone: built and saved with gliner, then
    given the published config (backbone swapped) and, where the release has none, no
    tokenizer."""
    import torch
    from gliner import GLiNER as TorchGLiNER
    from gliner import GLiNERConfig

    from gliner_onnx.export.demo.backbones import calibrate_head
    from gliner_onnx.export.quiet import quiet_loading

    data = _fixture(name)
    config = dict(data["gliner_config"], model_name=str(backbone.resolve()))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with quiet_loading():
            model = TorchGLiNER.from_config(
                GLiNERConfig(**config),
                backbone_from_pretrained=True,
                load_tokenizer=True,
                local_files_only=True,
            ).eval()
        calibrate_head(model, LOGIT_STD, texts=CALIBRATION_TEXTS)
    model.save_pretrained(out)
    (out / "gliner_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if not data["tokenizer_in_repo"]:
        for f in TOKENIZER_FILES:
            (out / f).unlink(missing_ok=True)
    return out


@pytest.fixture(scope="module")
def backbone(ckpt_root: Path) -> Path:
    from .backbones import make_tiny_deberta_v3

    return make_tiny_deberta_v3(ckpt_root / "tiny-deberta-v3-release", seed=3)


@pytest.mark.parametrize("name", EXPORTED)
def test_release_config_exports_and_answers_as_gliner(name: str, backbone: Path, tmp_path: Path) -> None:
    from gliner_onnx.export import export_model
    from gliner_onnx.export.exporter import load_gliner

    arch, span_head = EXPECTED[name]
    model_dir = _build(name, backbone, tmp_path / "ckpt", seed=FIXTURES.index(name))
    assert not any((model_dir / f).exists() for f in TOKENIZER_FILES) or _fixture(name)["tokenizer_in_repo"]
    ref = load_gliner(model_dir)
    assert GLINER_CLASSES[type(ref).__name__] == arch
    export_dir = tmp_path / "onnx"
    export_model(model_dir, export_dir, log=lambda _m: None)
    manifest = load_manifest(export_dir)
    assert (manifest.arch, manifest.span_head) == (arch, span_head)
    assert manifest.max_width == _fixture(name)["gliner_config"]["max_width"]
    ours = GLiNER.from_pretrained(export_dir)
    found = 0
    for threshold in (0.3, 0.5):
        kw: dict[str, Any] = dict(threshold=threshold)
        found += assert_same(
            ref.inference(TEXTS, LABELS, **kw), ours.inference(TEXTS, LABELS, **kw), f"{name} {kw}"
        )
    assert found > 0
    if name == "numind__NuNER_Zero":  # the card's post-processing, as an option
        ref_found = ref.inference(TEXTS, LABELS, threshold=0.3)
        merged = ours.inference(TEXTS, LABELS, threshold=0.3, merge_adjacent=True)
        assert_same([_card_merge_entities(t, e) for t, e in zip(TEXTS, ref_found)], merged, "merged")
        assert sum(map(len, merged)) < sum(map(len, ref_found))
        assert ours.predict_entities(TEXTS[0], LABELS, threshold=0.3, merge_adjacent=True) == merged[0]
        with pytest.raises(TypeError, match="merge_adjacent must be a bool"):
            ours.inference(TEXTS, LABELS, merge_adjacent="yes")  # type: ignore[arg-type]
    del ref, ours
    shutil.rmtree(tmp_path, ignore_errors=True)
