"""Bad input gets a clear ValueError / TypeError naming the bad value; blank text gives []."""

from __future__ import annotations

import math

import pytest

from gliner_onnx import GLiNER

from .conftest import Checkpoint


@pytest.fixture(scope="module")
def model(uni_minilm: Checkpoint) -> GLiNER:
    return GLiNER.from_pretrained(uni_minilm.export_dir)


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_blank_text_gives_no_entities(model: GLiNER, text: str) -> None:
    assert model.predict_entities(text, ["person"]) == []
    assert model.inference([text, "Angela Merkel", text], ["person"], threshold=0.0)[0] == []


@pytest.mark.parametrize("text", [None, 3, b"bytes", ["a list"]])
def test_non_string_text_is_a_type_error(model: GLiNER, text: object) -> None:
    with pytest.raises(TypeError, match="text"):
        model.predict_entities(text, ["person"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text 1"):
        model.inference(["ok", text], ["person"])  # type: ignore[list-item]


@pytest.mark.parametrize("labels", [[], "", ["person", ""], ["  "], {}])
def test_empty_labels_are_a_value_error(model: GLiNER, labels: object) -> None:
    with pytest.raises(ValueError, match="label"):
        model.predict_entities("Angela Merkel", labels)


@pytest.mark.parametrize("labels", [[1, 2], ["person", None], 42, [b"x"]])
def test_non_string_labels_are_a_type_error(model: GLiNER, labels: object) -> None:
    with pytest.raises(TypeError, match="label"):
        model.predict_entities("Angela Merkel", labels)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, math.nan, math.inf])
def test_threshold_out_of_range_is_a_value_error(model: GLiNER, threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        model.predict_entities("Angela Merkel", ["person"], threshold=threshold)


@pytest.mark.parametrize("threshold", ["0.5", None, True])
def test_threshold_of_wrong_type_is_a_type_error(model: GLiNER, threshold: object) -> None:
    with pytest.raises(TypeError, match="threshold"):
        model.predict_entities("Angela Merkel", ["person"], threshold=threshold)  # type: ignore[arg-type]


def test_threshold_bounds_are_allowed(model: GLiNER) -> None:
    assert model.predict_entities("Angela Merkel", ["person"], threshold=1.0) == []
    assert model.predict_entities("Angela Merkel", ["person"], threshold=0) != []


def test_per_text_labels_must_match_texts(model: GLiNER) -> None:
    with pytest.raises(ValueError, match="one label set per text"):
        model.inference(["a", "b"], [["person"]])


def test_batch_size_is_checked(model: GLiNER) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        model.inference(["a"], ["person"], batch_size=0)


def test_label_that_is_the_class_token_is_refused(model: GLiNER) -> None:
    with pytest.raises(ValueError, match="<<ENT>>"):
        model.predict_entities("Angela Merkel", ["person", "<<ENT>>"])


# gliner 0.2.29's `inference` keywords, in its order, then ours (all keyword-only after batch_size).
INFERENCE_PARAMS = [
    "texts", "labels", "flat_ner", "threshold", "multi_label", "batch_size", "relations",
    "adjacency_threshold", "relation_threshold", "return_relations", "label_embeddings", "window",
    "overlap", "gen_constraints", "merge_adjacent", "gen_kwargs",
]  # fmt: skip


def test_call_options_are_the_signature_of_inference_and_extract() -> None:
    """One `CallOptions` per call: its fields are `extract`'s keywords with their defaults (and
    `inference`'s but merge_adjacent, the facade's post-processing), so they cannot drift."""
    import dataclasses
    import inspect

    from gliner_onnx.runtime.options import CallOptions

    inference = inspect.signature(GLiNER.inference).parameters
    extract = inspect.signature(GLiNER.extract).parameters
    assert list(inference)[1:] == INFERENCE_PARAMS
    assert list(extract)[1:] == [p for p in INFERENCE_PARAMS if p != "merge_adjacent"]
    fields = {f.name: f for f in dataclasses.fields(CallOptions)}
    for name, param in extract.items():
        if param.kind is param.VAR_KEYWORD:
            assert fields.pop(name).default_factory() == {}  # type: ignore[misc]
        elif name not in ("self", "texts", "labels"):
            assert fields.pop(name).default == param.default == inference[name].default, name
    assert not fields, f"CallOptions fields that are not call arguments: {sorted(fields)}"


def test_generation_arguments_need_a_decoder_export(model: GLiNER) -> None:
    with pytest.raises(TypeError, match=r"generation arguments \['gen_constraints', 'num_gen_sequences'\]"):
        model.inference(["Angela Merkel"], ["person"], gen_constraints=["person"], num_gen_sequences=2)
    with pytest.raises(ValueError, match="relations need a relex export"):
        model.extract(["Angela Merkel"], ["person"], relation_threshold=0.3)
