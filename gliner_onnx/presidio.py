"""A Presidio recognizer backed by gliner-onnx (the `presidio` extra).

    from presidio_analyzer import AnalyzerEngine
    from gliner_onnx.presidio import GlinerOnnxRecognizer

    analyzer = AnalyzerEngine()
    analyzer.registry.add_recognizer(GlinerOnnxRecognizer(model="out"))

It follows Presidio's own `GLiNERRecognizer` (presidio_analyzer/predefined_recognizers/ner/
gliner_recognizer.py): an entity mapping from GLiNER labels to Presidio entity names (or
`supported_entities`, mapped to themselves; not both), the requested entities that no label maps
to added as labels, results filtered to the requested entities, an `AnalysisExplanation` with the
model's score. Differences: the model is a gliner-onnx export (no torch), and texts are not cut
into 250-character chunks: long texts run in the runtime's word windows, which never cut an entity.

From Presidio's YAML recognizer registry, once this module is imported (Presidio finds predefined
recognizers among the loaded `EntityRecognizer` subclasses; importing it also adds its YAML schema
to Presidio's `CONFIG_MODEL_MAP`, without which Presidio's validation drops every field it does not
know, `model` included):

    recognizers:
      - name: GlinerOnnxRecognizer
        type: predefined
        model: /path/to/export
        threshold: 0.3
        entity_mapping: {person: PERSON, email: EMAIL_ADDRESS}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from pydantic import ConfigDict

from gliner_onnx.archs import get_arch
from gliner_onnx.errors import GlinerOnnxError

# GLiNER labels (natural language, as GLiNER models are prompted) -> Presidio entity names.
# Presidio's GLiNERRecognizer defaults to NerModelConfiguration's mapping, whose keys are spaCy /
# BIO tag names (PER, GPE, NORP, HOSP, ...): poor prompts for GLiNER. These are the labels of its
# documentation's examples and of PII GLiNER models, mapped to Presidio's predefined entity names.
DEFAULT_ENTITY_MAPPING: dict[str, str] = {
    "person": "PERSON",
    "organization": "ORGANIZATION",
    "location": "LOCATION",
    "date": "DATE_TIME",
    "nationality": "NRP",
    "age": "AGE",
    "email": "EMAIL_ADDRESS",
    "phone number": "PHONE_NUMBER",
    "credit card number": "CREDIT_CARD",
    "iban": "IBAN_CODE",
    "ip address": "IP_ADDRESS",
    "url": "URL",
    "social security number": "US_SSN",
}


class RecognizerConfigError(GlinerOnnxError, ValueError):
    """The recognizer's arguments are invalid."""


def _entity_mapping(
    supported_entities: Sequence[str] | None, entity_mapping: Mapping[str, str] | None
) -> dict[str, str]:
    if entity_mapping:
        if supported_entities:
            raise RecognizerConfigError("entity_mapping and supported_entities cannot be used together")
        bad = [k for k, v in entity_mapping.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise RecognizerConfigError(f"entity_mapping must map label strings to entity strings: {bad!r}")
        return dict(entity_mapping)
    if supported_entities:
        return {e: e for e in supported_entities}
    return dict(DEFAULT_ENTITY_MAPPING)


class GlinerOnnxRecognizer(LocalRecognizer):
    """Presidio `EntityRecognizer` running a gliner-onnx export (export directory or Hub id)."""

    def __init__(
        self,
        model: str | None = None,
        supported_entities: list[str] | None = None,
        entity_mapping: dict[str, str] | None = None,
        name: str = "GlinerOnnxRecognizer",
        supported_language: str = "en",
        version: str = "0.1.0",
        context: list[str] | None = None,
        threshold: float = 0.30,
        flat_ner: bool = True,
        multi_label: bool = False,
        providers: str = "cpu",
        batch_size: int = 8,
        threads: int = 0,
        model_name: str | None = None,
        map_location: str | None = None,
    ):
        """model (or Presidio's name `model_name`): a gliner-onnx export directory or Hub id.
        threshold defaults to Presidio's GLiNERRecognizer's (0.30). providers (or `map_location`,
        "cpu" / "cuda"): ONNX Runtime's; threads: its intra-op threads (0: its default)."""
        if model is not None and model_name is not None and model != model_name:
            raise RecognizerConfigError(f"model ({model!r}) and model_name ({model_name!r}) disagree")
        model = model if model is not None else model_name
        if model is None:
            raise RecognizerConfigError("GlinerOnnxRecognizer needs `model`: an export directory or Hub id")
        self.model_name = str(model)
        self.model_to_presidio_entity_mapping = _entity_mapping(supported_entities, entity_mapping)
        self.gliner_labels = list(self.model_to_presidio_entity_mapping)
        self.threshold = threshold
        self.flat_ner = flat_ner
        self.multi_label = multi_label
        self.providers = map_location if map_location is not None else providers
        self.batch_size = batch_size
        self.threads = threads
        self.gliner: Any = None
        super().__init__(  # calls load()
            supported_entities=sorted(set(self.model_to_presidio_entity_mapping.values())),
            name=name,
            supported_language=supported_language,
            version=version,
            context=context,
        )

    def load(self) -> None:
        from gliner_onnx import GLiNER, SessionOptions

        if self.gliner is None:
            options = SessionOptions(intra_op_num_threads=self.threads)
            self.gliner = GLiNER.from_pretrained(
                self.model_name, providers=self.providers, session_options=options
            )
            # Fail here on a bad threshold, not on the first text.
            self.predict([""], self.gliner_labels)

    def input_labels(self, entities: Sequence[str] | None) -> list[str]:
        """The labels sent to the model: the mapping's, then each requested entity that no label
        maps to (Presidio's GLiNERRecognizer does the same)."""
        labels = list(self.gliner_labels)
        targets = set(self.model_to_presidio_entity_mapping.values())
        for entity in entities or []:
            if entity not in targets and entity not in labels:
                labels.append(entity)
        return labels

    def predict(self, texts: list[str], labels: list[str]) -> list[list[dict[str, Any]]]:
        """The runtime's entities of each text (one call: texts batched by the runtime)."""
        kwargs: dict[str, Any] = {"return_relations": False} if get_arch(self.gliner.arch).relex else {}
        result: list[list[dict[str, Any]]] = self.gliner.inference(
            texts,
            labels,
            flat_ner=self.flat_ner,
            threshold=self.threshold,
            multi_label=self.multi_label,
            batch_size=self.batch_size,
            **kwargs,
        )
        return result

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Presidio results for one text (nlp_artifacts are not used)."""
        return self.analyze_batch([text], entities)[0]

    def analyze_batch(
        self, texts: list[str], entities: list[str] | None = None
    ) -> list[list[RecognizerResult]]:
        """`analyze` over many texts in one runtime call."""
        if not texts:
            return []
        predictions = self.predict(list(texts), self.input_labels(entities))
        return [self._results(p, entities) for p in predictions]

    def _results(
        self, predictions: list[dict[str, Any]], entities: list[str] | None
    ) -> list[RecognizerResult]:
        name: str = self.name  # type: ignore[has-type]  # (set in Presidio's untyped __init__)
        results = []
        for pred in predictions:
            entity = self.model_to_presidio_entity_mapping.get(pred["label"], pred["label"])
            if entities and entity not in entities:
                continue
            explanation = AnalysisExplanation(
                recognizer=name,
                original_score=pred["score"],
                textual_explanation=f"Identified as {entity} by gliner-onnx (label {pred['label']!r})",
            )
            results.append(
                RecognizerResult(
                    entity_type=entity,
                    start=pred["start"],
                    end=pred["end"],
                    score=pred["score"],
                    analysis_explanation=explanation,
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    },
                )
            )
        return results


def _register_yaml_schema() -> None:
    """Presidio validates each YAML recognizer entry with the config model registered for its class
    name (`CONFIG_MODEL_MAP`, "for modular expansion"); the default one ignores unknown fields."""
    try:
        from presidio_analyzer.input_validation import yaml_recognizer_models as models
    except ImportError:  # a Presidio without YAML validation passes the fields through
        return

    class GlinerOnnxRecognizerConfig(models.PredefinedRecognizerConfig):  # type: ignore[name-defined,misc]
        """YAML entry of `GlinerOnnxRecognizer`: its constructor's arguments, None left out."""

        model_config = ConfigDict(extra="allow")

        model: str | None = None
        model_name: str | None = None
        entity_mapping: dict[str, str] | None = None
        threshold: float | None = None
        flat_ner: bool | None = None
        multi_label: bool | None = None
        providers: str | None = None
        map_location: str | None = None
        batch_size: int | None = None
        threads: int | None = None

        def model_dump(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            kwargs.setdefault("exclude_none", True)
            dumped: dict[str, Any] = super().model_dump(*args, **kwargs)
            return dumped

    table = getattr(models, "CONFIG_MODEL_MAP", None)
    if isinstance(table, dict):
        table.setdefault(GlinerOnnxRecognizer.__name__, GlinerOnnxRecognizerConfig)


_register_yaml_schema()
