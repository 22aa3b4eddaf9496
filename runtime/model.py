"""The torch-free GLiNER: composes the stages over the graphs of one export.

split words -> labels and prompt -> tokenize -> span indices -> text encoder
(-> label encoder, bi-encoders, cached) -> scorer -> threshold -> greedy select
-> character offsets. A variant is a different list of the same stages.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliner_onnx.archs import family
from gliner_onnx.errors import GlinerOnnxError
from gliner_onnx.manifest import Manifest, load_manifest

from .decode import greedy_search, span_candidates, token_candidates
from .features import TextContext, make_context, text_feeds
from .labels import LabelSet, normalize_label_set, normalize_labels
from .options import InferenceParams, ProviderSpec, SessionOptions
from .session import GraphSession, resolve_providers
from .tokenize import SubwordTokenizer

Entity = dict[str, Any]
_LABEL_CACHE_SIZE = 100_000


class GLiNER:
    """A GLiNER model exported by `gliner-export`, run with ONNX Runtime only.

    Load with `GLiNER.from_pretrained(export_dir, providers="cpu")`. The prediction
    methods take and return what gliner's do.
    """

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        sessions: dict[str, GraphSession],
        tokenizers: dict[str, SubwordTokenizer],
    ):
        self.directory = directory
        self.manifest = manifest
        self._sessions = sessions
        self._tokenizers = tokenizers
        self.family = family(manifest.arch)
        self._rep_name = manifest.graphs["scorer"].inputs[0]
        self._label_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        providers: str | Sequence[ProviderSpec] = "cpu",
        session_options: SessionOptions | None = None,
        verify: bool = True,
    ) -> GLiNER:
        """Load an export directory.

        providers: "cpu", "cuda" or an explicit ONNX Runtime provider list; it
        overrides `session_options.providers`. verify: check every file's sha256.
        """
        directory = Path(path)
        manifest = load_manifest(directory, verify=verify)
        base = session_options or SessionOptions()
        options = SessionOptions(
            providers=providers,
            intra_op_num_threads=base.intra_op_num_threads,
            inter_op_num_threads=base.inter_op_num_threads,
            graph_optimization_level=base.graph_optimization_level,
            device_id=base.device_id,
        )
        resolved = resolve_providers(options)
        sessions = {
            name: GraphSession(directory / g.file, name, g.inputs, g.outputs, options, resolved)
            for name, g in manifest.graphs.items()
        }
        tokenizers = {
            name: SubwordTokenizer(
                directory / t.file,
                pad_token_id=t.pad_token_id,
                pad_token=t.pad_token,
                model_max_length=t.model_max_length,
            )
            for name, t in manifest.tokenizers.items()
        }
        return cls(directory, manifest, sessions, tokenizers)

    @property
    def arch(self) -> str:
        return self.manifest.arch

    @property
    def is_biencoder(self) -> bool:
        return "label_encoder" in self._sessions

    @property
    def providers(self) -> list[str]:
        """The providers ONNX Runtime actually uses (of the text encoder's session)."""
        return list(self._sessions["text_encoder"].providers)

    # --------------------------------------------------------------- public API
    def predict_entities(
        self,
        text: str,
        labels: Any,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        *,
        label_embeddings: np.ndarray | None = None,
    ) -> list[Entity]:
        """Entities of one text: a list of {start, end, text, label, score}."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        return self.inference(
            [text],
            labels,
            flat_ner=flat_ner,
            threshold=threshold,
            multi_label=multi_label,
            label_embeddings=label_embeddings,
        )[0]

    def batch_predict_entities(
        self,
        texts: Sequence[str],
        labels: Any,
        threshold: float = 0.5,
        flat_ner: bool = True,
        multi_label: bool = False,
        batch_size: int = 8,
        *,
        label_embeddings: np.ndarray | None = None,
    ) -> list[list[Entity]]:
        """Entities of each text (gliner's deprecated name for `inference`)."""
        return self.inference(
            texts,
            labels,
            flat_ner=flat_ner,
            threshold=threshold,
            multi_label=multi_label,
            batch_size=batch_size,
            label_embeddings=label_embeddings,
        )

    def inference(
        self,
        texts: str | Sequence[str],
        labels: Any,
        flat_ner: bool = True,
        threshold: float = 0.5,
        multi_label: bool = False,
        batch_size: int = 8,
        *,
        label_embeddings: np.ndarray | None = None,
    ) -> list[list[Entity]]:
        """Entities of each text, in gliner's output format.

        labels: a string, a list of strings, a {name: description} mapping, or one
        list/mapping per text. label_embeddings (bi-encoders): the rows returned by
        `encode_labels` for the de-duplicated labels, in order.
        """
        params = InferenceParams(threshold=threshold, flat_ner=flat_ner, multi_label=multi_label)
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} must be a string, got {type(t).__name__}: {t!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        label_sets = normalize_labels(labels, len(texts))
        given = self._check_label_embeddings(label_embeddings, labels, label_sets)

        results: list[list[Entity]] = [[] for _ in texts]
        valid = [i for i, t in enumerate(texts) if t.strip()]
        for lo in range(0, len(valid), batch_size):
            chunk = valid[lo : lo + batch_size]
            contexts = [self._context(texts[i], label_sets[i]) for i in chunk]
            for i, entities in zip(chunk, self._predict_batch(contexts, params, given)):
                results[i] = entities
        return results

    def encode_labels(self, labels: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Final label embeddings (N, hidden) of a bi-encoder, one row per label given.

        They are cached by label text; pass them back with `label_embeddings=`.
        """
        if not self.is_biencoder:
            raise ValueError(f"encode_labels needs a bi-encoder export; this one is {self.arch!r}")
        label_set = normalize_label_set(list(labels) if not isinstance(labels, str) else labels)
        prompts = [labels] if isinstance(labels, str) else list(labels)
        self._ensure_labels(label_set.prompts, batch_size)
        with self._cache_lock:
            return np.stack([self._label_cache[p] for p in prompts])

    def predict_with_embeds(
        self, text: str, labels_embeddings: np.ndarray, labels: Sequence[str], **kwargs: Any
    ) -> list[Entity]:
        """gliner's `predict_with_embeds`: predict with precomputed label embeddings."""
        return self.predict_entities(text, labels, label_embeddings=labels_embeddings, **kwargs)

    def batch_predict_with_embeds(
        self, texts: Sequence[str], labels_embeddings: np.ndarray, labels: Sequence[str], **kwargs: Any
    ) -> list[list[Entity]]:
        """gliner's `batch_predict_with_embeds`."""
        return self.inference(texts, labels, label_embeddings=labels_embeddings, **kwargs)

    def clear_label_cache(self) -> None:
        with self._cache_lock:
            self._label_cache.clear()

    # ----------------------------------------------------------------- pipeline
    def _context(self, text: str, labels: LabelSet) -> TextContext:
        m = self.manifest
        return make_context(text, labels, splitter=m.words_splitter, max_len=m.max_len)

    def _text_feeds(self, contexts: list[TextContext]) -> dict[str, np.ndarray]:
        m = self.manifest
        feeds = text_feeds(
            contexts,
            self._tokenizers["text"],
            max_width=m.max_width,
            pooling=m.subtoken_pooling,
            prompt_tokens=None if self.is_biencoder else (m.ent_token, m.sep_token),
            with_spans=self.family == "span",
        )
        if not self.is_biencoder:
            self._check_prompt_tokens(feeds["input_ids"], feeds["attention_mask"], contexts)
        return feeds

    def _predict_batch(
        self, contexts: list[TextContext], params: InferenceParams, given: np.ndarray | None
    ) -> list[list[Entity]]:
        scores = self._scores(contexts, given)
        if self.family == "span":  # (B, W, max_width, C)
            per_text = [scores[b, :, :, : len(c.labels)] for b, c in enumerate(contexts)]
        else:  # (B, W, C, 3)
            per_text = [scores[b, :, : len(c.labels), :] for b, c in enumerate(contexts)]
        return [self._decode(c, probs, params) for c, probs in zip(contexts, per_text)]

    def _scores(self, contexts: list[TextContext], given: np.ndarray | None = None) -> np.ndarray:
        """Probabilities of a batch: (B, W, max_width, C_max) for spans, (B, W, C_max, 3) for tokens."""
        outputs = self._sessions["text_encoder"].run(self._text_feeds(contexts))
        span_rep = outputs[0]
        prompts_emb = self._label_matrix(contexts, given) if self.is_biencoder else outputs[1]
        (scores,) = self._sessions["scorer"].run({self._rep_name: span_rep, "prompts": prompts_emb})
        return scores

    def _decode(self, ctx: TextContext, probs: np.ndarray, params: InferenceParams) -> list[Entity]:
        find = span_candidates if self.family == "span" else token_candidates
        candidates = find(probs, ctx.num_words, params.threshold)
        kept = greedy_search(candidates, flat_ner=params.flat_ner, multi_label=params.multi_label)
        entities: list[Entity] = []
        for start_w, end_w, cls, score in kept:
            start = ctx.words.starts[start_w]
            end = ctx.words.ends[end_w]
            entities.append(
                {
                    "start": start,
                    "end": end,
                    "text": ctx.text[start:end],
                    "label": ctx.labels.names[cls],
                    "score": float(score),
                }
            )
        return entities

    def _check_prompt_tokens(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, contexts: list[TextContext]
    ) -> None:
        """Every label must give exactly one class token, else prompts would misalign."""
        counts = ((input_ids == self.manifest.ent_token_id) & (attention_mask > 0)).sum(axis=1)
        for c, n in zip(contexts, counts.tolist()):
            if n != len(c.labels):
                raise ValueError(
                    f"the prompt of {len(c.labels)} labels holds {n} {self.manifest.ent_token!r} tokens: "
                    "a label contains that special token, or labels and text exceed the encoder's "
                    f"{self._tokenizers['text'].model_max_length} subword tokens"
                )

    # ------------------------------------------------------------ label encoder
    def _check_label_embeddings(
        self, label_embeddings: np.ndarray | None, labels: Any, label_sets: list[LabelSet]
    ) -> np.ndarray | None:
        if label_embeddings is None:
            return None
        if not self.is_biencoder:
            raise ValueError(f"label_embeddings need a bi-encoder export; this one is {self.arch!r}")
        emb = np.asarray(label_embeddings)
        if emb.dtype != np.float32:
            emb = emb.astype(np.float32)
        if isinstance(labels, list) and labels and isinstance(labels[0], (list, tuple, Mapping)):
            raise ValueError("label_embeddings work with one shared label list, not per-text labels")
        n = len(label_sets[0]) if label_sets else 0
        if emb.ndim != 2 or emb.shape[0] != n:
            raise ValueError(
                f"label_embeddings must have shape ({n}, hidden) for the {n} distinct labels, got {emb.shape}"
            )
        return emb

    def _ensure_labels(self, prompts: Sequence[str], batch_size: int = 32) -> None:
        with self._cache_lock:
            missing = list(dict.fromkeys(p for p in prompts if p not in self._label_cache))
        if not missing:
            return
        encoded: dict[str, np.ndarray] = {}
        for lo in range(0, len(missing), batch_size):
            part = missing[lo : lo + batch_size]
            tb = self._tokenizers["labels"].encode_texts(part)
            (emb,) = self._sessions["label_encoder"].run(
                {"input_ids": tb.input_ids, "attention_mask": tb.attention_mask}
            )
            encoded.update(zip(part, emb))
        with self._cache_lock:
            for p, e in encoded.items():
                self._label_cache[p] = e
                self._label_cache.move_to_end(p)
            while len(self._label_cache) > _LABEL_CACHE_SIZE:
                self._label_cache.popitem(last=False)

    def _label_matrix(self, contexts: list[TextContext], given: np.ndarray | None) -> np.ndarray:
        """(B, C_max, hidden) label embeddings for the batch, zero-padded per text."""
        if given is not None:
            return np.ascontiguousarray(np.broadcast_to(given, (len(contexts), *given.shape)))
        all_prompts = [p for c in contexts for p in c.labels.prompts]
        self._ensure_labels(all_prompts)
        with self._cache_lock:
            rows = [[self._label_cache[p] for p in c.labels.prompts] for c in contexts]
        hidden = rows[0][0].shape[-1]
        c_max = max(len(r) for r in rows)
        out = np.zeros((len(contexts), c_max, hidden), dtype=np.float32)
        for b, r in enumerate(rows):
            out[b, : len(r)] = np.stack(r)
        return out


__all__ = ["GLiNER", "GlinerOnnxError"]
