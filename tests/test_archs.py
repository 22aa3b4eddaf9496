"""One record per arch (`gliner_onnx.archs.ARCHS`): every table that lists the archs, and every
place that decides an arch, agrees with the records."""

from __future__ import annotations

import dataclasses

import pytest

from gliner_onnx.archs import ARCH_NAMES, ARCHS, GRAPHS, Arch, find_arch, get_arch, graph_specs
from gliner_onnx.errors import UnsupportedArchError
from gliner_onnx.export import configs
from gliner_onnx.export.detect import detect_arch
from gliner_onnx.runtime.onegraph import arch_of
from gliner_onnx.runtime.pipelines import ARCH_LAYOUTS, PIPELINES

RECORDS = list(ARCHS.values())


def _gliner_config(arch: Arch) -> dict[str, object]:
    """The gliner config keys that make gliner 0.2.29 choose this arch's class."""
    config: dict[str, object] = {"span_mode": "token_level" if arch.family == "token" else "markerV0"}
    if arch.bi:
        config["labels_encoder"] = "BAAI/bge-small-en-v1.5"
    if arch.relex:
        config["relations_layer"] = "dot"
    if arch.decoder:
        config["labels_decoder"] = "gpt2"
    return config


def test_derived_tables_agree_with_the_records() -> None:
    assert ARCH_NAMES == tuple(a.name for a in RECORDS)
    assert GRAPHS == {a.name: a.graphs for a in RECORDS}
    assert ARCH_LAYOUTS == {a.name: a.layout for a in RECORDS}
    assert {a.layout for a in RECORDS} | {"onegraph"} == set(PIPELINES)
    assert sorted(configs.EXPORT_CONFIGS) == sorted(ARCH_NAMES)
    # no two records describe the same arch
    assert len({(a.encoder, a.family, a.extension) for a in RECORDS}) == len(RECORDS)


@pytest.mark.parametrize("arch", RECORDS, ids=lambda a: a.name)
def test_the_name_says_what_the_record_says(arch: Arch) -> None:
    suffix = "" if arch.extension == "none" else f"_{arch.extension}"
    assert arch.name == f"{arch.encoder}encoder_{arch.family}{suffix}"
    assert get_arch(arch.name) is arch
    # the pipeline of its layout runs what the extension adds (tests/test_registry.py: what it accepts)
    assert arch.layout == {"none": "entities"}.get(arch.extension, arch.extension)
    assert find_arch(arch.encoder, arch.family, arch.extension) is arch


@pytest.mark.parametrize("arch", RECORDS, ids=lambda a: a.name)
def test_graphs_agree_with_the_fields(arch: Arch) -> None:
    names = [g.name for g in arch.graphs]
    assert names[0] == "text_encoder" and "scorer" in names
    assert ("label_encoder" in names) == arch.bi
    assert ("relation_scorer" in names) == arch.relex
    assert ("decoder_step" in names) == arch.decoder
    scorer = next(g for g in arch.graphs if g.name == "scorer")
    assert scorer.input_names[0] == f"{arch.family}_rep"
    assert graph_specs(arch.name) == arch.graphs
    assert bool(arch.factorized) == (arch.family == "span" and arch.extension == "none")


@pytest.mark.parametrize("arch", RECORDS, ids=lambda a: a.name)
def test_detection_and_export_config_follow_the_record(arch: Arch) -> None:
    config = _gliner_config(arch)
    assert detect_arch(config) == arch.name
    if not arch.decoder:  # gliner has no one-graph export of decoder models
        assert arch_of(dict(config), "test") == arch.name
    export = configs.export_config(arch.name)
    assert export.record is arch
    assert (export.family, export.bi, export.relex, export.decoder) == (
        arch.family,
        arch.bi,
        arch.relex,
        arch.decoder,
    )
    assert (export.demo.relations_layer is not None) == arch.relex
    assert export.demo.labels_decoder == arch.decoder


def test_records_refuse_unknown_values_and_lookups() -> None:
    with pytest.raises(ValueError, match="encoder must be one of"):
        dataclasses.replace(RECORDS[0], encoder="tri")
    with pytest.raises(ValueError, match="layout must be one of"):
        dataclasses.replace(RECORDS[0], layout="entity")
    with pytest.raises(UnsupportedArchError, match="no arch is a bi-encoder with a span head"):
        find_arch("bi", "span", "relex")  # gliner's relex models are uni-encoders
    with pytest.raises(UnsupportedArchError, match="valid names: uniencoder_span, uniencoder_token"):
        get_arch("uniencoder")
