"""A spaCy pipeline component backed by gliner-onnx (the `spacy` extra).

    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_onnx", config={"model": "out", "labels": ["person", "location"]})

The factory is registered through the `spacy_factories` entry point, so `add_pipe` finds it
without importing this module; importing it registers it too (`@Language.factory`).

Entities are the runtime's (`GLiNER.inference`), character offsets into `doc.text`, mapped to
tokens with `Doc.char_span(start, end, label, alignment_mode=...)` (default "strict": the span's
offsets are the runtime's exactly; "contract" / "expand" snap to the tokens inside / around).
An entity whose offsets do not fall on token boundaries under that mode is not dropped silently:
it is counted (`component.unaligned`), logged once per component, and kept on
`doc._.gliner_unaligned` as the runtime's dict. Scores are on `Span._.score`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import filter_spans, minibatch

from gliner_onnx.archs import get_arch
from gliner_onnx.errors import GlinerOnnxError

logger = logging.getLogger("gliner_onnx.spacy")

FACTORY = "gliner_onnx"
_SCORE_KEY = "gliner_onnx.score"
_STYLES = ("ent", "span")
_ALIGNMENT_MODES = ("strict", "contract", "expand")


class ComponentConfigError(GlinerOnnxError, ValueError):
    """The component's configuration is invalid (names the setting and what is allowed)."""


def _score_key(span: Span) -> tuple[str, int, int, str]:
    return (_SCORE_KEY, span.start_char, span.end_char, span.label_)


def _get_score(span: Span) -> float | None:
    user_data: dict[Any, Any] = span.doc.user_data
    value: float | None = user_data.get(_score_key(span))
    return value


def _set_score(span: Span, value: float | None) -> None:
    user_data: dict[Any, Any] = span.doc.user_data
    user_data[_score_key(span)] = value


def _register_extensions() -> None:
    # Span extension values are keyed by character offsets only; ours are keyed by the label too,
    # so that each label of a multi-label span keeps its score. gliner-spacy registers a plain
    # `score` (force=True, when spaCy loads its entry points); ours replaces it when a component
    # is built: writing `span._.score` works the same for its code, and reads back per label.
    current = Span.get_extension("score") if Span.has_extension("score") else None
    if current is None or current[2] is not _get_score:
        if current is not None:
            logger.info("replacing the existing Span._.score extension with gliner_onnx's (per label)")
        Span.set_extension("score", getter=_get_score, setter=_set_score, force=True)
    if not Doc.has_extension("gliner_unaligned"):
        Doc.set_extension("gliner_unaligned", default=None)


_register_extensions()


def entities_to_spans(
    doc: Doc, entities: Sequence[Mapping[str, Any]], alignment_mode: str = "strict"
) -> tuple[list[Span], list[dict[str, Any]]]:
    """The runtime's entities as spans of `doc`, and those that do not align with its tokens."""
    spans: list[Span] = []
    unaligned: list[dict[str, Any]] = []
    for ent in entities:
        span = doc.char_span(ent["start"], ent["end"], label=ent["label"], alignment_mode=alignment_mode)
        if span is None or len(span) == 0:
            unaligned.append(dict(ent))
            continue
        span._.score = float(ent["score"])
        spans.append(span)
    return spans, unaligned


class GlinerOnnxComponent:
    """Predicts entities with a gliner-onnx export and writes them to `doc.ents` or `doc.spans`."""

    def __init__(
        self,
        nlp: Language,
        name: str,
        model: str,
        labels: list[str] | dict[str, str],
        *,
        threshold: float = 0.5,
        flat_ner: bool | None = None,
        multi_label: bool = False,
        style: str = "ent",
        spans_key: str = "sc",
        batch_size: int = 8,
        alignment_mode: str = "strict",
        providers: str = "cpu",
        threads: int = 0,
    ):
        if style not in _STYLES:
            raise ComponentConfigError(f"style must be one of {list(_STYLES)}, got {style!r}")
        if alignment_mode not in _ALIGNMENT_MODES:
            raise ComponentConfigError(
                f"alignment_mode must be one of {list(_ALIGNMENT_MODES)}, got {alignment_mode!r}"
            )
        if not labels:
            raise ComponentConfigError("labels must be a non-empty list or {label: description} mapping")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ComponentConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        from gliner_onnx import GLiNER, SessionOptions

        _register_extensions()
        self.name = name
        self.model_name = model
        options = SessionOptions(intra_op_num_threads=threads)
        self.model = GLiNER.from_pretrained(model, providers=providers, session_options=options)
        self.labels: list[str] | dict[str, str] = labels
        self.threshold = threshold
        # gliner-spacy's rule: "span" style decodes nested entities, "ent" style flat ones.
        self.flat_ner = (style == "ent") if flat_ner is None else flat_ner
        self.multi_label = multi_label
        self.style = style
        self.spans_key = spans_key
        self.batch_size = batch_size
        self.alignment_mode = alignment_mode
        self.unaligned = 0  # entities that did not align with the tokens, over this component's life
        self._relex = get_arch(self.model.arch).relex
        # Fail at construction on bad labels or threshold, not on the first document.
        self._predict([""])

    def _predict(self, texts: list[str]) -> list[list[dict[str, Any]]]:
        kwargs: dict[str, Any] = {"return_relations": False} if self._relex else {}
        result: list[list[dict[str, Any]]] = self.model.inference(
            texts,
            self.labels,
            flat_ner=self.flat_ner,
            threshold=self.threshold,
            multi_label=self.multi_label,
            batch_size=self.batch_size,
            **kwargs,
        )
        return result

    def __call__(self, doc: Doc) -> Doc:
        self.set_annotations(doc, self._predict([doc.text])[0])
        return doc

    def pipe(self, stream: Iterable[Doc], batch_size: int = 128) -> Iterator[Doc]:
        """`nlp.pipe`'s batches of docs: one runtime call each (the runtime sorts them by length and
        runs `self.batch_size` texts per encoder call)."""
        for docs in minibatch(stream, size=batch_size):
            for doc, entities in zip(docs, self._predict([d.text for d in docs])):
                self.set_annotations(doc, entities)
                yield doc

    def set_annotations(self, doc: Doc, entities: Sequence[Mapping[str, Any]]) -> None:
        spans, unaligned = entities_to_spans(doc, entities, self.alignment_mode)
        doc._.gliner_unaligned = unaligned
        if unaligned:
            if self.unaligned == 0:
                logger.warning(
                    "%s: %d entit%s of a document did not align with its tokens (alignment_mode=%r; "
                    "e.g. %r at %d-%d); they are kept on doc._.gliner_unaligned and counted on the "
                    "component's `unaligned` (logged once)",
                    self.name,
                    len(unaligned),
                    "y" if len(unaligned) == 1 else "ies",
                    self.alignment_mode,
                    unaligned[0]["text"],
                    unaligned[0]["start"],
                    unaligned[0]["end"],
                )
            self.unaligned += len(unaligned)
        if self.style == "span":
            group = doc.spans[self.spans_key] = spans
            doc.spans[self.spans_key].attrs["scores"] = [s._.score for s in group]
        else:
            # spaCy's overlap rule for doc.ents: the longest span wins, then the first; among
            # spans of equal length the higher score goes first.
            ranked = sorted(spans, key=lambda s: -s._.score)
            doc.ents = filter_spans(ranked)


@Language.factory(
    FACTORY,
    assigns=["doc.ents", "doc.spans", "span._.score"],
    default_config={
        "model": None,
        "labels": None,
        "threshold": 0.5,
        "flat_ner": None,
        "multi_label": False,
        "style": "ent",
        "spans_key": "sc",
        "batch_size": 8,
        "alignment_mode": "strict",
        "providers": "cpu",
        "threads": 0,
        "gliner_model": None,
        "map_location": None,
        "chunk_size": None,
    },
)
def make_gliner_onnx(
    nlp: Language,
    name: str,
    model: str | None,
    labels: list[str] | dict[str, str] | None,
    threshold: float,
    flat_ner: bool | None,
    multi_label: bool,
    style: Literal["ent", "span"],
    spans_key: str,
    batch_size: int,
    alignment_mode: Literal["strict", "contract", "expand"],
    providers: str,
    threads: int,
    gliner_model: str | None,
    map_location: str | None,
    chunk_size: int | None,
) -> GlinerOnnxComponent:
    """The `gliner_onnx` factory. gliner-spacy's names are accepted: `gliner_model` (= model),
    `map_location` ("cpu" / "cuda", = providers) and `chunk_size` (ignored: long documents run in
    the runtime's word windows, with no cut inside an entity). threads: ONNX Runtime's intra-op
    threads (0: its default, one per core; 1 with `nlp.pipe(n_process=N)`)."""
    if model is not None and gliner_model is not None and model != gliner_model:
        raise ComponentConfigError(f"model ({model!r}) and gliner_model ({gliner_model!r}) disagree")
    model = model if model is not None else gliner_model
    if model is None:
        raise ComponentConfigError("the gliner_onnx component needs `model`: an export directory or Hub id")
    if labels is None:
        raise ComponentConfigError("the gliner_onnx component needs `labels`: a list or {label: description}")
    if chunk_size is not None:
        logger.info("%s: chunk_size is ignored (long documents are run in the runtime's windows)", name)
    return GlinerOnnxComponent(
        nlp,
        name,
        str(model),
        labels,
        threshold=threshold,
        flat_ner=flat_ner,
        multi_label=multi_label,
        style=style,
        spans_key=spans_key,
        batch_size=batch_size,
        alignment_mode=alignment_mode,
        providers=map_location if map_location is not None else providers,
        threads=threads,
    )
