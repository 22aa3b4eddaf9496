"""Every registered arch has an export config, the configs agree with the registry, and the corpus
(package data) is the one agreements were recorded on (import cycles: tests/test_structure.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gliner_onnx.archs import ARCH_NAMES, ARCHS, graph_specs
from gliner_onnx.errors import UnsupportedArchError
from gliner_onnx.export import configs, precision, samples

EXPORT_DIR = Path(configs.__file__).parent
# sha256 of the corpus as it was a Python constant (export/demo/backbones.py's CORPUS): the
# int8 / fp16 agreements recorded in manifests and benchmarks/results were measured on it.
CORPUS_SHA256 = "e179f8c82f678d3f8f53334c9751e7f5f00b9eb04c1578405c01626355d94c52"


def test_every_arch_has_an_export_config() -> None:
    assert sorted(configs.EXPORT_CONFIGS) == sorted(ARCH_NAMES)
    for arch in ARCH_NAMES:
        assert configs.export_config(arch).arch == arch


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_config_agrees_with_the_registry(arch: str) -> None:
    config = configs.export_config(arch)
    # the config runs its graphs through the pipeline of the arch's runtime layout (the export
    # fails when that stage does not run every graph the registry lists: TorchGraphs.check_ran_all)
    runs = {"relex": configs._RelexConfig, "decoder": configs._DecoderConfig}
    for layout, kind in runs.items():
        assert isinstance(config, kind) == (ARCHS[arch].layout == layout)
    assert ARCHS[arch].layout in {*runs, "entities"}
    for head in config.span_heads:
        graph_specs(arch, head)  # every span head the config offers has a registry layout
    if "factorized" not in config.span_heads:
        with pytest.raises(UnsupportedArchError):
            graph_specs(arch, "factorized")
    assert config.demo.span_mode == ("token_level" if ARCHS[arch].family == "token" else "markerV0")
    assert config.demo.labels_encoder == ARCHS[arch].bi


def test_unknown_arch_names_the_valid_ones() -> None:
    with pytest.raises(UnsupportedArchError, match="valid names: uniencoder_span"):
        configs.export_config("uniencoder_spam")


def test_corpus_is_package_data_with_the_recorded_bytes() -> None:
    data = samples.CORPUS_FILE.read_bytes()
    assert samples.CORPUS_FILE.parent.parent == EXPORT_DIR
    assert hashlib.sha256(data).hexdigest() == CORPUS_SHA256
    assert len(samples.corpus_lines()) == 114
    corpus = precision.agreement_corpus()
    assert len(corpus) == 115 and corpus[-1] == samples.LONG
