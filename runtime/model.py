"""The torch-free GLiNER: composes the stages over the graphs of one export.

split words -> labels and prompt -> tokenize -> span indices -> text encoder
(-> label encoder, bi-encoders, cached) -> scorer -> threshold -> greedy select
-> character offsets. A variant is a different list of the same stages.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gliner_onnx.archs import family, is_relex
from gliner_onnx.errors import GlinerOnnxError
from gliner_onnx.manifest import Manifest, load_manifest

from . import relations as rel
from .decode import Candidates, SpanCandidate, greedy_search, span_candidate_arrays, token_candidates
from .features import TextContext, text_feeds
from .generate import GenerationParams
from .generative import LabelDecoder, decoder_inference
from .hub import layout_of, resolve_model
from .labels import (
    LabelSet,
    build_prompt,
    is_per_text,
    normalize_label_set,
    normalize_labels,
    normalize_relations,
)
from .options import InferenceParams, ProviderSpec, SessionOptions
from .session import GraphSession, resolve_providers
from .tokenize import SubwordTokenizer
from .windows import Window, merge_candidates, plan_windows
from .words import Words, split_words

Entity = dict[str, Any]
RelationDict = dict[str, Any]
_PAIR_CHUNK = 4096  # relation scorer pairs per call: memory stays bounded at any threshold


class _RelexJob(NamedTuple):
    """What one window keeps for relation decoding after the entity graphs ran."""

    entity_spans: np.ndarray  # (E, 2) window-local word boundaries of the model's entities
    entity_rep: np.ndarray  # (E, hidden)
    pairs: np.ndarray  # (P, 2) candidate (head, tail) entity pairs, -1 padding removed
    rel_prompts: np.ndarray  # (C_rel, hidden) of this text's relation labels


_LABEL_CACHE_SIZE = 100_000
_GIVEN_CACHE_SIZE = 16  # label embedding arrays (label sets) passed by the caller


class _LabelRow(NamedTuple):
    """A cached label: its final embedding and, for factorized bi-encoders, its key and bias."""

    embedding: np.ndarray
    key: np.ndarray | None = None
    bias: np.ndarray | None = None


_MIN_TEXT_TOKENS = 16  # subword room a text needs beside the labels' prompt


@dataclass(frozen=True)
class _Plan:
    """A whole text (its words untruncated) and the windows it is run in."""

    context: TextContext
    windows: list[Window]

    def window_context(self, window: Window) -> TextContext:
        ws, we = window
        c = self.context
        words = Words(c.words.words[ws:we], c.words.starts[ws:we], c.words.ends[ws:we])
        return TextContext(c.text, words, we - ws, c.labels, c.relations)


def _check_encodable(value: str, what: str) -> None:
    """Lone surrogates cannot reach the (Rust) tokenizer: say so instead of crashing there."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate at index {e.start})") from None


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
        self._text_outputs = manifest.graphs["text_encoder"].outputs
        self._scorer_inputs = manifest.graphs["scorer"].inputs
        # label text -> its embedding, and (factorized bi-encoders) its key and bias
        self._label_cache: OrderedDict[str, _LabelRow] = OrderedDict()
        # label embedding arrays passed by the caller, by content -> their keys and bias
        self._given_cache: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        # (device type, id) where the text encoder's outputs stay for the scorer; None: numpy.
        self._device: tuple[str, int] | None = None
        self._cache_lock = threading.Lock()
        self._decoder: LabelDecoder | None = None
        if "decoder_step" in sessions:  # generative label decoder
            self._decoder = LabelDecoder(
                manifest.decoder,
                sessions["decoder_prefix"],
                sessions["decoder_step"],
                tokenizers["decoder"],
                directory / manifest.tokenizers["decoder"].file,
            )

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        providers: str | Sequence[ProviderSpec] = "cpu",
        session_options: SessionOptions | None = None,
        verify: bool = True,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        onnx_file: str | None = None,
    ) -> GLiNER:
        """Load an export directory, or a Hugging Face Hub repo id (the `hub` extra).

        providers: "cpu", "cuda" or an explicit ONNX Runtime provider list; it
        overrides `session_options.providers`. verify: check every file's sha256.
        revision, cache_dir, token, local_files_only: huggingface_hub's, for a repo id
        (`HF_HUB_OFFLINE=1` is honoured too); see `runtime/hub.py`. onnx_file: the graph
        of gliner's own one-graph layout (default model.onnx or onnx/model.onnx).
        """
        directory = resolve_model(
            path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            onnx_file=onnx_file,
        )
        if layout_of(directory) == "gliner":  # gliner's export_to_onnx layout: runtime/onegraph.py
            from .onegraph import load_onegraph

            return load_onegraph(
                directory, onnx_file=onnx_file, providers=providers, session_options=session_options
            )
        manifest = load_manifest(directory, verify=verify)
        base = session_options or SessionOptions()
        options = replace(base, providers=providers)
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
        model = cls(directory, manifest, sessions, tokenizers)
        first = resolved[0][0] if isinstance(resolved[0], tuple) else resolved[0]
        on_cuda = first == "CUDAExecutionProvider"
        if options.io_binding or (options.io_binding is None and on_cuda):
            model._device = ("cuda", options.device_id) if on_cuda else ("cpu", 0)
        return model

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
        **gen_kwargs: Any,
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
            return_relations=False,  # relex exports: entities only, as gliner's
            **gen_kwargs,
        )[0]

    def predict_relations(
        self,
        text: str,
        labels: Any,
        relations: Any,
        flat_ner: bool = True,
        threshold: float = 0.5,
        adjacency_threshold: float | None = None,
        relation_threshold: float | None = None,
        multi_label: bool = False,
    ) -> tuple[list[Entity], list[RelationDict]]:
        """Relex exports: (entities, relations) of one text (gliner's `predict_relations`)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        if not is_relex(self.arch):
            raise ValueError(f"relations need a relex export; this one is {self.arch!r}")
        entities, found = self.inference(
            [text],
            labels,
            relations=relations,
            flat_ner=flat_ner,
            threshold=threshold,
            adjacency_threshold=adjacency_threshold,
            relation_threshold=relation_threshold,
            multi_label=multi_label,
        )
        return entities[0], found[0]

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
        relations: Any = None,
        adjacency_threshold: float | None = None,
        relation_threshold: float | None = None,
        return_relations: bool = True,
        label_embeddings: np.ndarray | None = None,
        window: int | None = None,
        overlap: int | None = None,
        gen_constraints: Sequence[str] | None = None,
        **gen_kwargs: Any,
    ) -> Any:
        """Entities of each text, in gliner's output format.

        labels: a string, a list of strings, a {name: description} mapping, or one
        list/mapping per text. label_embeddings (bi-encoders): the rows returned by
        `encode_labels` for the de-duplicated labels, in order.

        Relex exports return `(entities, relations)` as gliner does (entities only with
        `return_relations=False`): `relations` are the relation labels (shared or one list
        per text); adjacency_threshold and relation_threshold default to `threshold`. Each
        relation is {head, tail, relation, score}, head and tail being {start, end, text,
        type, entity_idx} with entity_idx the position in that text's entity list.

        A text longer than `window` words (default: the checkpoint's max_len, 384) or than
        the encoder's subword limit is run in windows overlapping by `overlap` words
        (default: 2 x max_width) instead of being truncated; a text that fits gets
        exactly gliner's answer. (Relex: relations are found within a window.)

        Decoder exports (generative labels) take gliner's generation arguments:
        gen_constraints (labels the generated ones must be), num_gen_sequences (1; more: beam search),
        max_new_tokens (15), do_sample (True), temperature (0.01), top_k (50), seed
        (None), use_cache (True); each entity gets `generated_labels` (decoder_mode
        "span"), or its label is the generated one (decoder_mode "prompt"). They
        batch texts in order and truncate to max_len words, as gliner does.
        """
        params = InferenceParams(
            threshold=threshold,
            flat_ner=flat_ner,
            multi_label=multi_label,
            adjacency_threshold=adjacency_threshold,
            relation_threshold=relation_threshold,
        )
        relex = is_relex(self.arch)
        if not relex and (
            relations is not None or adjacency_threshold is not None or relation_threshold is not None
        ):
            raise ValueError(f"relations need a relex export; this one is {self.arch!r}")
        if adjacency_threshold is None:
            adjacency_threshold = threshold
        if relation_threshold is None:
            relation_threshold = threshold
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} must be a string, got {type(t).__name__}: {t!r}")
            _check_encodable(t, f"text {i}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        label_sets = normalize_labels(labels, len(texts))
        relation_sets = normalize_relations(relations, len(texts)) if relex else [()] * len(texts)
        if self._decoder is not None:
            if window is not None or overlap is not None or label_embeddings is not None:
                raise ValueError("window, overlap and label_embeddings do not apply to decoder exports")
            unknown = sorted(set(gen_kwargs) - set(GenerationParams.__dataclass_fields__))
            if unknown:
                raise TypeError(
                    f"unknown generation arguments {unknown}; "
                    f"valid: gen_constraints, {', '.join(GenerationParams.__dataclass_fields__)}"
                )
            gen = GenerationParams(**gen_kwargs)
            return decoder_inference(self, texts, label_sets, params, gen, gen_constraints, batch_size)
        if gen_kwargs or gen_constraints is not None:
            names = sorted([*gen_kwargs, *(["gen_constraints"] if gen_constraints is not None else [])])
            raise TypeError(f"generation arguments {names} need a decoder export; this one is {self.arch!r}")
        given = self._check_label_embeddings(label_embeddings, labels, label_sets)

        window, overlap = self._window_settings(window, overlap)

        results: list[list[Entity]] = [[] for _ in texts]
        found_relations: list[list[RelationDict]] = [[] for _ in texts]
        valid = [i for i, t in enumerate(texts) if t.strip()]
        plans = {i: self._plan(texts[i], label_sets[i], window, overlap, relation_sets[i]) for i in valid}
        jobs = [(i, w) for i in valid for w in plans[i].windows]
        # Batch windows of similar length together (less padding), then restore the order.
        # Relex keeps gliner's batches (input order): with contextual adjacency layers
        # (attention, gcn, gat) an entity's pairs depend on the batch's padding entities.
        order = list(range(len(jobs)))
        if not relex:
            order.sort(key=lambda j: jobs[j][1][1] - jobs[j][1][0])
        per_job: list[Candidates | list[SpanCandidate]] = [[] for _ in jobs]
        relex_jobs: list[_RelexJob | None] = [None] * len(jobs)
        for lo in range(0, len(order), batch_size):
            batch = order[lo : lo + batch_size]
            contexts = [plans[jobs[j][0]].window_context(jobs[j][1]) for j in batch]
            if relex:
                found, kept_for_relations = self._relex_candidates(
                    contexts, params.threshold, adjacency_threshold, not params.multi_label
                )
                for j, r in zip(batch, kept_for_relations):
                    relex_jobs[j] = r
            else:
                found = self._candidates(contexts, params.threshold, given, not params.multi_label)
            for j, f in zip(batch, found):
                per_job[j] = f
        k = 0
        for i in valid:
            plan = plans[i]
            first, k = k, k + len(plan.windows)
            parts = per_job[first:k]
            candidates: Candidates | list[SpanCandidate]
            if len(parts) == 1:
                candidates = parts[0]
            else:  # token candidates come as lists
                arrays = [p if isinstance(p, Candidates) else Candidates.from_list(p) for p in parts]
                candidates = merge_candidates(arrays, plan.windows, plan.context.num_words, self.family)
            kept = greedy_search(candidates, flat_ner=params.flat_ner, multi_label=params.multi_label)
            results[i] = self._entities(plan.context, kept)
            if relex and return_relations:
                windows = [(w, relex_jobs[j]) for w, j in zip(plan.windows, range(first, k))]
                found_relations[i] = self._relations(
                    plan.context, kept, results[i], windows, relation_threshold
                )
        if relex and return_relations:
            return results, found_relations
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
            return np.stack([self._label_cache[p].embedding for p in prompts])

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
            self._given_cache.clear()

    # ----------------------------------------------------------------- pipeline
    def _window_settings(self, window: int | None, overlap: int | None) -> tuple[int, int]:
        m = self.manifest
        window = m.max_len if window is None else window
        overlap = 2 * m.max_width if overlap is None else overlap
        for name, v in (("window", window), ("overlap", overlap)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        if window < 1 or overlap >= window:
            raise ValueError(f"need 0 <= overlap < window, got window={window}, overlap={overlap}")
        return window, min(overlap, window - 1)

    def _plan(
        self, text: str, labels: LabelSet, window: int, overlap: int, relations: tuple[str, ...] = ()
    ) -> _Plan:
        """Split the words; one window if they fit the word and subword limits, else several."""
        m = self.manifest
        words = split_words(text, m.words_splitter)
        context = TextContext(text, words, len(words), labels, relations)
        tok = self._tokenizers["text"]
        prompt = (
            []
            if self.is_biencoder
            else build_prompt(labels.prompts, m.ent_token, m.sep_token, relations, m.rel_token)
        )
        costs = tok.word_costs(prompt + list(words.words))
        prompt_cost = int(costs[: len(prompt)].sum())
        text_costs = costs[len(prompt) :]
        limit = tok.model_max_length
        budget = math.inf if limit is None else limit - tok.num_special_tokens - prompt_cost
        if budget < _MIN_TEXT_TOKENS:
            raise ValueError(self._too_many_labels(labels, limit))
        if len(words) <= window and text_costs.sum() <= budget:
            return _Plan(context, [(0, len(words))])
        # -1: a window's first word may cost one more subword than inside the whole text.
        windows = plan_windows(text_costs, max_words=window, max_cost=budget - 1, overlap=overlap)
        return _Plan(context, windows)

    def _too_many_labels(self, labels: LabelSet, limit: int | None) -> str:
        m = self.manifest
        tok = self._tokenizers["text"]
        fit = 0
        for k in range(1, len(labels) + 1):
            cost = int(tok.word_costs(build_prompt(labels.prompts[:k], m.ent_token, m.sep_token)).sum())
            if limit is not None and cost + tok.num_special_tokens + _MIN_TEXT_TOKENS > limit:
                break
            fit = k
        return (
            f"{len(labels)} labels do not fit the encoder's {limit} subword tokens together with a text; "
            f"at most {fit} of these labels fit: pass fewer labels per call"
        )

    def _text_feeds(self, contexts: list[TextContext]) -> dict[str, np.ndarray]:
        m = self.manifest
        feeds = text_feeds(
            contexts,
            self._tokenizers["text"],
            max_width=m.max_width,
            pooling=m.subtoken_pooling,
            prompt_tokens=None if self.is_biencoder else (m.ent_token, m.sep_token),
            with_spans=self.family == "span",
            rel_token=m.rel_token,
        )
        if not self.is_biencoder:
            self._check_prompt_tokens(feeds["input_ids"], feeds["attention_mask"], contexts)
        return feeds

    def _candidates(
        self,
        contexts: list[TextContext],
        threshold: float,
        given: np.ndarray | None,
        best_label_only: bool = False,
    ) -> list[Candidates | list[SpanCandidate]]:
        """Window-local candidate spans of each context of a batch."""
        return self._window_candidates(self._scores(contexts, given), contexts, threshold, best_label_only)

    def _window_candidates(
        self, scores: np.ndarray, contexts: list[TextContext], threshold: float, best_label_only: bool = False
    ) -> list[Candidates | list[SpanCandidate]]:
        """Candidates of each context from the batch's probabilities (the padded class slots cut).
        best_label_only (span models, greedy without multi_label): a span's best label only."""
        out: list[Candidates | list[SpanCandidate]] = []
        for b, c in enumerate(contexts):
            # span: (B, W, max_width, C); token: (B, W, C, 3)
            if self.family == "span":
                probs = scores[b, :, :, : len(c.labels)]
                found = span_candidate_arrays(probs, c.num_words, threshold, best_label_only=best_label_only)
                out.append(found)
            else:
                out.append(token_candidates(scores[b, :, : len(c.labels)], c.num_words, threshold))
        return out

    def _scores(self, contexts: list[TextContext], given: np.ndarray | None = None) -> np.ndarray:
        """Probabilities of a batch: (B, W, max_width, C_max) for spans, (B, W, C_max, 3) for tokens."""
        feeds: dict[str, Any] = dict(self._text_feeds(contexts))
        encoder, scorer = self._sessions["text_encoder"], self._sessions["scorer"]
        if self._device is not None:
            feeds.update(zip(self._text_outputs, encoder.run_on_device(feeds, *self._device)))
        else:
            feeds.update(zip(self._text_outputs, encoder.run(feeds)))
        if self.is_biencoder:
            feeds.update(self._label_feeds(contexts, given))
        if self._device is not None:
            (scores,) = scorer.run_on_device(feeds, "cpu", 0)
            return np.asarray(scores.numpy())
        (scores,) = scorer.run(feeds)
        return scores

    # ------------------------------------------------------------------ relex
    def _relex_candidates(
        self,
        contexts: list[TextContext],
        threshold: float,
        adjacency_threshold: float,
        best_label_only: bool = False,
    ) -> tuple[list[Candidates | list[SpanCandidate]], list[_RelexJob]]:
        """Entity candidates of a batch and, per context, the model's entities and pairs."""
        feeds: dict[str, Any] = dict(self._text_feeds(contexts))
        feeds.update(zip(self._text_outputs, self._sessions["text_encoder"].run(feeds)))
        (probs,) = self._sessions["scorer"].run(feeds)
        found = self._window_candidates(probs, contexts, threshold, best_label_only)
        if self.family == "span":
            entities, flat = rel.select_span_entities(probs, [c.num_words for c in contexts], threshold)
            entity_rep = rel.span_entity_reps(feeds["span_rep"], flat, entities.spans.shape[1])
        else:
            entities = rel.select_token_entities(probs, threshold)
            (entity_rep,) = self._sessions["entity_encoder"].run(
                {"word_rep": feeds["word_rep"], "entity_spans": entities.spans}
            )
        num_entities = entities.spans.shape[1]
        if "relation_adjacency" not in self._sessions:
            pairs = rel.all_pairs(entities.counts)
        elif num_entities >= 2:
            (adjacency,) = self._sessions["relation_adjacency"].run(
                {"entity_rep": entity_rep, "entity_mask": entities.mask}
            )
            pairs = rel.adjacency_pairs(adjacency, adjacency_threshold)
        else:  # one entity slot has no pair (i != j)
            pairs = [np.zeros((0, 2), dtype=np.int64)] * len(contexts)
        rel_prompts = feeds["rel_prompts"]
        jobs = [
            _RelexJob(entities.spans[b], entity_rep[b], pairs[b], rel_prompts[b, : len(c.relations)])
            for b, c in enumerate(contexts)
        ]
        return found, jobs

    def _relation_scores(self, job: _RelexJob, pairs: np.ndarray) -> np.ndarray:
        """(N, C_rel) probabilities of `pairs`, scored in chunks so memory stays bounded."""
        scorer = self._sessions["relation_scorer"]
        prompts = job.rel_prompts[None]
        chunks = []
        for lo in range(0, len(pairs), _PAIR_CHUNK):
            part = pairs[lo : lo + _PAIR_CHUNK]
            (scores,) = scorer.run(
                {
                    "head_rep": job.entity_rep[part[:, 0]][None],
                    "tail_rep": job.entity_rep[part[:, 1]][None],
                    "rel_prompts": prompts,
                }
            )
            chunks.append(scores[0])
        return np.concatenate(chunks)

    def _relations(
        self,
        ctx: TextContext,
        kept: list[SpanCandidate],
        entities: list[Entity],
        windows: list[tuple[Window, _RelexJob | None]],
        threshold: float,
    ) -> list[RelationDict]:
        """The relations among a text's decoded entities. Only pairs whose both ends
        survived greedy decoding are scored: gliner drops the others after scoring them.
        A (head, tail, relation) that an earlier window found is not repeated by a later
        one; within a window gliner's duplicates stay (token models can select the same
        span once per class)."""
        decoded = [(s, e) for s, e, _, _ in kept]
        found: list[rel.Relation] = []
        earlier: set[tuple[int, int, int]] = set()
        for (ws, _we), job in windows:
            if job is None or len(job.rel_prompts) == 0 or len(job.pairs) == 0:
                continue
            mapping = rel.entity_map(job.entity_spans + ws, decoded)
            pairs = job.pairs[rel.surviving_pairs(job.pairs, mapping)]
            if len(pairs) == 0:
                continue
            probs = self._relation_scores(job, pairs)
            here = rel.decode_relations(pairs, probs, mapping, threshold)
            found.extend(r for r in here if r[:3] not in earlier)
            earlier.update(r[:3] for r in here)

        def end(i: int) -> dict[str, Any]:
            e = entities[i]
            return {
                "start": e["start"],
                "end": e["end"],
                "text": e["text"],
                "type": e["label"],
                "entity_idx": i,
            }

        return [
            {"head": end(h), "tail": end(t), "relation": ctx.relations[c], "score": p} for h, t, c, p in found
        ]

    def _entities(self, ctx: TextContext, kept: list[SpanCandidate]) -> list[Entity]:
        """Word spans -> gliner's entity dicts: the one place offsets are made."""
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
        if is_per_text(labels):
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
        encoded: dict[str, _LabelRow] = {}
        for lo in range(0, len(missing), batch_size):
            part = missing[lo : lo + batch_size]
            tb = self._tokenizers["labels"].encode_texts(part)
            (emb,) = self._sessions["label_encoder"].run(
                {"input_ids": tb.input_ids, "attention_mask": tb.attention_mask}
            )
            if "label_projector" in self._sessions:
                keys, bias = self._sessions["label_projector"].run({"label_embeddings": emb})
                encoded.update((p, _LabelRow(*row)) for p, row in zip(part, zip(emb, keys, bias)))
            else:
                encoded.update((p, _LabelRow(e)) for p, e in zip(part, emb))
        with self._cache_lock:
            for p, row in encoded.items():
                self._label_cache[p] = row
                self._label_cache.move_to_end(p)
            while len(self._label_cache) > _LABEL_CACHE_SIZE:
                self._label_cache.popitem(last=False)

    def _label_feeds(self, contexts: list[TextContext], given: np.ndarray | None) -> dict[str, np.ndarray]:
        """The scorer's label inputs for the batch, zero-padded per text: `prompts`
        (B, C_max, hidden), or for factorized bi-encoders `label_keys` (B, C_max, 4 x hidden)
        and `label_bias` (B, C_max), projected once per label and cached."""
        keyed = "label_projector" in self._sessions
        batch = len(contexts)
        if given is not None:
            if not keyed:
                return {"prompts": np.ascontiguousarray(np.broadcast_to(given, (batch, *given.shape)))}
            keys, bias = self._project_given(given)
            return {
                "label_keys": np.ascontiguousarray(np.broadcast_to(keys, (batch, *keys.shape))),
                "label_bias": np.ascontiguousarray(np.broadcast_to(bias, (batch, *bias.shape))),
            }
        all_prompts = [p for c in contexts for p in c.labels.prompts]
        self._ensure_labels(all_prompts)
        with self._cache_lock:
            rows = [[self._label_cache[p] for p in c.labels.prompts] for c in contexts]
        c_max = max(len(r) for r in rows)
        if not keyed:
            prompts = np.zeros((batch, c_max, rows[0][0].embedding.shape[-1]), dtype=np.float32)
            for b, r in enumerate(rows):
                prompts[b, : len(r)] = np.stack([row.embedding for row in r])
            return {"prompts": prompts}
        first_key = rows[0][0].key
        assert first_key is not None
        keys = np.zeros((batch, c_max, first_key.shape[-1]), dtype=np.float32)
        bias = np.zeros((batch, c_max), dtype=np.float32)
        for b, r in enumerate(rows):
            keys[b, : len(r)] = np.stack([row.key for row in r])  # type: ignore[misc]
            bias[b, : len(r)] = [row.bias for row in r]
        return {"label_keys": keys, "label_bias": bias}

    def _project_given(self, given: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keys and bias of caller-given label embeddings, cached by the array's content."""
        data = np.ascontiguousarray(given, dtype=np.float32)
        digest = hashlib.blake2b(data.tobytes(), digest_size=16)
        digest.update(repr(data.shape).encode())
        key = digest.digest()
        with self._cache_lock:
            hit = self._given_cache.get(key)
            if hit is not None:
                self._given_cache.move_to_end(key)
                return hit
        keys, bias = self._sessions["label_projector"].run({"label_embeddings": data})
        with self._cache_lock:
            self._given_cache[key] = (keys, bias)
            while len(self._given_cache) > _GIVEN_CACHE_SIZE:
                self._given_cache.popitem(last=False)
        return keys, bias


__all__ = ["GLiNER", "GlinerOnnxError"]
