"""Any input: threads, random Unicode (hypothesis), offsets that are Python string offsets."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gliner_onnx import GLiNER

from .conftest import LABELS, TEXTS, Checkpoint

UNICODE_TEXTS = [
    "Zoë Saldaña and François Hollande met in Zürich.",  # accents (precomposed)
    "Zoe\u0308 Salda\u0303na visited Ko\u0301ln.",  # combining marks
    "習近平は東京タワーを訪れた。김정은도 왔다.",  # CJK, Hangul
    "محمد بن سلمان زار الرياض. שלום מירושלים.",  # RTL: Arabic, Hebrew
    "👩🏽‍🔬 Dr. Ada 👨‍👩‍👧‍👦 and 🇫🇷 Macron 🤝🏿.",  # modifiers, ZWJ sequences, flags
    "zero\u200bwidth\u200d joiner\ufeff and\x00control\x07 chars\u2028line",  # zero-width, controls
]


@pytest.fixture(scope="module")
def model(bi_token_deberta_bert: Checkpoint) -> GLiNER:
    return GLiNER.from_pretrained(bi_token_deberta_bert.export_dir)


@pytest.fixture(scope="module")
def uni(uni_deberta: Checkpoint) -> GLiNER:
    return GLiNER.from_pretrained(uni_deberta.export_dir)


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_unicode_offsets_are_python_string_offsets(uni: GLiNER, uni_deberta: Checkpoint, text: str) -> None:
    got = uni.predict_entities(text, LABELS, threshold=0.3)
    assert got
    for e in got:
        assert text[e["start"] : e["end"]] == e["text"]
    ref = uni_deberta.torch_model.predict_entities(text, LABELS, threshold=0.3)
    assert [(e["start"], e["end"], e["label"]) for e in got] == [
        (e["start"], e["end"], e["label"]) for e in ref
    ]


def test_lone_surrogates_are_a_value_error(uni: GLiNER) -> None:
    with pytest.raises(ValueError, match="text 0 is not valid Unicode"):
        uni.predict_entities("bad \ud800 text", ["person"])
    with pytest.raises(ValueError, match="lone surrogate"):
        uni.predict_entities("good text", ["per\udfffson"])


def test_special_looking_and_duplicate_labels(uni: GLiNER, uni_deberta: Checkpoint) -> None:
    labels = ["[SEP]", "person", "[CLS]", "person", "<<SEP>>x", "[MASK] thing"]
    got = uni.predict_entities(TEXTS[0], labels, threshold=0.3)
    ref = uni_deberta.torch_model.predict_entities(TEXTS[0], labels, threshold=0.3)
    assert [(e["start"], e["end"], e["label"]) for e in got] == [
        (e["start"], e["end"], e["label"]) for e in ref
    ]


def test_many_threads_get_the_serial_answers(model: GLiNER) -> None:
    jobs = [
        (TEXTS[i % len(TEXTS)], [LABELS[(i + k) % len(LABELS)] for k in range(1 + i % 4)]) for i in range(48)
    ]
    model.clear_label_cache()
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda job: model.predict_entities(job[0], job[1], threshold=0.4), jobs))
    serial = [model.predict_entities(text, labels, threshold=0.4) for text, labels in jobs]
    assert parallel == serial
    assert sum(map(len, serial)) > 20


_label = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() and "<<" not in s)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(texts=["Angela Merkel met Macron in Paris."], labels=["person"], threshold=1.0, flat_ner=True)
@example(texts=["Angela Merkel met Macron in Paris."], labels=["person"], threshold=0.0, flat_ner=False)
@given(
    texts=st.lists(st.text(max_size=120), min_size=1, max_size=4),
    labels=st.lists(_label, min_size=1, max_size=4),
    threshold=st.floats(0.0, 1.0),
    flat_ner=st.booleans(),
)
def test_random_unicode_never_breaks(
    model: GLiNER, texts: list[str], labels: list[str], threshold: float, flat_ner: bool
) -> None:
    texts = [t.encode("utf-8", "replace").decode("utf-8") for t in texts]  # no lone surrogates
    labels = [lab.encode("utf-8", "replace").decode("utf-8") for lab in labels]
    batched = model.inference(texts, labels, threshold=threshold, flat_ner=flat_ner, batch_size=3)
    for text, entities in zip(texts, batched):
        last_end = -1
        if threshold == 1.0:
            assert entities == []  # strict > threshold: no probability passes 1
        for e in entities:
            assert text[e["start"] : e["end"]] == e["text"] and e["start"] < e["end"]
            assert threshold < e["score"] <= 1.0
            if flat_ner:
                assert e["start"] >= last_end  # sorted by start and never overlapping
                last_end = e["end"]
        single = model.predict_entities(text, labels, threshold=threshold, flat_ner=flat_ner)
        assert [(e["start"], e["end"], e["label"]) for e in single] == [
            (e["start"], e["end"], e["label"]) for e in entities
        ]
