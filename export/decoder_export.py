"""Export of the generative label decoder: its tokenizer, the prefix and step graphs, and
their validation against gliner's own decoder inputs and the Hugging Face decoder.

Validated per case of `samples.CASES` and threshold:

* the prefix embeddings the runtime builds (`runtime/label_generation.py`, through the traced
  embedding layer) equal gliner's `get_raw_decoder_inputs(select_span_decoder_embedding(...))`
  in shape and values (span mode; the reference's prompt mode cannot run, see README);
* the prefix graph's last logits equal the Hugging Face model's on those embeddings, and
  two cached steps equal Hugging Face's steps on its own cache.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from gliner_onnx.archs import DECODER_PREFIX, DECODER_STEP, GraphSpec
from gliner_onnx.errors import ExportError
from gliner_onnx.manifest import GraphEntry
from gliner_onnx.runtime.generation_loop import Prefixes
from gliner_onnx.runtime.label_decoder import EntityGraphs
from gliner_onnx.runtime.label_generation import DECODER_MODES, decoder_words
from gliner_onnx.runtime.labels import build_prompt

from . import samples
from .context import ExportContext, save_graph
from .decoder_wrappers import DecoderPrefix, DecoderStep
from .graph_runs import TorchGraphs
from .parity import ParityRecorder, relative_tolerance
from .tokenizer_io import (
    check_text_tokenization,
    check_words_tokenization,
    load_runtime_tokenizer,
    write_tokenizer,
)

THRESHOLDS = (0.3, 0.5, 0.7)
_STEPS = 2
# Validation batches: the reference pads every prefix to (about) the whole decoder text,
# so long texts with many selected spans cost gigabytes in torch; the rows checked are
# capped (the same rows on both sides).
_CASES = (samples.CASES[0], ((samples.MEDIUM, samples.SHORT), ("person", "organization", "date")))
_MAX_ROWS = 48
_CONSTRAINT_SAMPLES = ("person", "organization name", "city", "Ångström unit", "東京タワー", "e-mail")


def decoder_lm(model: Any) -> Any:
    return model.model.decoder.decoder_layer.model


def check_decoder(model: Any) -> str:
    """The checkpoint's decoder_mode, if this export supports it."""
    cfg = model.config
    mode = getattr(cfg, "decoder_mode", None)
    if mode not in DECODER_MODES:
        raise ExportError(
            f"decoder_mode {mode!r}: gliner generates no labels in this mode; "
            f"supported: {', '.join(DECODER_MODES)}"
        )
    if getattr(model.data_processor, "decoder_tokenizer", None) is None:
        raise ExportError("the checkpoint has no decoder tokenizer")
    return str(mode)


class DecoderExport:
    def __init__(self, ctx: ExportContext):
        self.ex = ctx
        self.model = ctx.model
        self.core = ctx.model.model
        self.mode = check_decoder(self.model)
        self.full_context = self.mode == "span" and bool(
            getattr(self.model.config, "full_decoder_context", True)
        )
        self.lm = decoder_lm(self.model)
        self.projection: Any = getattr(self.core, "_enc2dec_proj", None)
        self.prefix_module = DecoderPrefix(self.lm, self.projection).eval()
        self.modules: dict[str, torch.nn.Module] = {
            "decoder_prefix": self.prefix_module,
            "decoder_step": DecoderStep(self.lm).eval(),
        }
        self.specs: dict[str, GraphSpec] = {"decoder_prefix": DECODER_PREFIX, "decoder_step": DECODER_STEP}
        self.hf_tok = self.model.data_processor.decoder_tokenizer

    # -- tokenizer and settings
    def write_tokenizer(self) -> None:
        entry = write_tokenizer(self.hf_tok, self.ex.dir, "decoder/tokenizer.json")
        self.ex.tokenizer_entries["decoder"] = entry
        self.tok = load_runtime_tokenizer(self.ex.dir, entry)
        for texts, labels in (*samples.CASES, (samples.TRACE_TEXTS, samples.TRACE_LABELS)):
            ctxs = self.ex.contexts(texts, labels)
            words = [decoder_words(self._prompt(list(labels)), c.words.words[: c.num_words]) for c in ctxs]
            check_words_tokenization(self.hf_tok, self.tok, [words])
        from tokenizers import Tokenizer

        plain = Tokenizer.from_file(str(self.ex.dir / entry.file))
        for label in _CONSTRAINT_SAMPLES:
            if self.hf_tok.encode(label) != plain.encode(label).ids:
                raise ExportError(
                    f"the decoder tokenizer.json encodes the constraint {label!r} unlike gliner's"
                )
        check_text_tokenization(self.hf_tok, self.tok, list(_CONSTRAINT_SAMPLES[:1]))

    def settings(self) -> dict[str, Any]:
        tok, cfg = self.hf_tok, self.lm.config
        return {
            "mode": self.mode,
            "full_context": self.full_context,
            "eos_token_id": int(tok.eos_token_id),
            "bos_token_id": None if tok.bos_token_id is None else int(tok.bos_token_id),
            "pad_token_id": int(tok.pad_token_id),
            "clean_up_tokenization_spaces": bool(getattr(tok, "clean_up_tokenization_spaces", False)),
            "projection": self.projection is not None,
            "vocab_size": int(cfg.vocab_size),
            "num_layers": int(cfg.n_layer),
            "num_heads": int(cfg.n_head),
            "hidden_size": int(cfg.n_embd),
            "max_positions": int(cfg.n_positions),
        }

    def _prompt(self, labels: Sequence[str]) -> list[str]:
        cfg = self.model.config
        return build_prompt(list(dict.fromkeys(labels)), cfg.ent_token, cfg.sep_token)

    # -- prefixes, built by the runtime's own pipeline stage from the text graphs' torch outputs
    def prefixes(self, texts: Sequence[str], labels: Sequence[str], threshold: float) -> Prefixes:
        """The decoder prefixes of a case; token models: every selected candidate slot, also
        those past a text's words (the runtime generates only for spans inside the text; the
        reference takes them all)."""
        model = self.ex.loaded(TorchGraphs(self.ex))
        graphs = EntityGraphs(model, self.mode, self.full_context, self.tok)
        return graphs.inputs(self.ex.contexts(texts, labels), threshold, every_slot=True).prefixes

    @staticmethod
    def _prefix_feeds(p: Prefixes) -> dict[str, np.ndarray]:
        return {"span_rep": p.span_rep, "prefix_ids": p.prefix_ids, "prefix_kind": p.prefix_kind}

    @torch.inference_mode()
    def _torch(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [torch.from_numpy(np.array(feeds[n], copy=True)) for n in self.specs[name].input_names]
        return [o.float().numpy() for o in self.modules[name](*args)]

    # -- tracing
    def trace(self) -> dict[str, GraphEntry]:
        p = self.prefixes(samples.TRACE_TEXTS, samples.TRACE_LABELS, 0.5)
        if len(p) < 2:
            p = self.prefixes(samples.TRACE_TEXTS, samples.TRACE_LABELS, 0.0)
        prefix_feeds = self._prefix_feeds(p)
        logits, present = self._torch("decoder_prefix", prefix_feeds)
        step_feeds = {"input_ids": np.argmax(logits, -1)[:, None].astype(np.int64), "past": present}
        entries = {}
        for name, feeds in (("decoder_prefix", prefix_feeds), ("decoder_step", step_feeds)):
            self.ex.log(f"tracing {name} ...")
            entries[name] = save_graph(
                self.modules[name], self.specs[name], feeds, self.ex.dir, self.ex.opset
            )
        return entries

    # -- validation
    def validate(self, graphs: dict[str, GraphEntry]) -> dict[str, dict[str, float]]:
        sessions = {
            n: ort.InferenceSession(str(self.ex.dir / g.file), providers=["CPUExecutionProvider"])
            for n, g in graphs.items()
        }
        parity = ParityRecorder([*graphs, "decoder_embeds"])
        for case, (texts, labels) in enumerate(_CASES):
            for threshold in THRESHOLDS if self.mode == "span" else (0.5,):
                where = f"case {case}, threshold {threshold}"
                p = self.prefixes(texts, labels, threshold)
                if len(p) == 0:
                    continue
                ref_embeds = self._reference_embeds(texts, labels, threshold)
                rows = np.linspace(0, len(p) - 1, min(len(p), _MAX_ROWS)).round().astype(int)
                if ref_embeds.shape[0] == len(p):
                    ref_embeds = ref_embeds[rows]
                p = Prefixes(p.span_rep[rows], p.prefix_ids[rows], p.prefix_kind[rows])
                with torch.inference_mode():
                    ours = self.prefix_module.embeds(
                        *(
                            torch.from_numpy(np.array(a, copy=True))
                            for a in (p.span_rep, p.prefix_ids, p.prefix_kind)
                        )
                    )
                self._record(parity, "decoder_embeds", "inputs_embeds", ref_embeds, ours.numpy(), where)
                self._check_generation(sessions, parity, p, torch.from_numpy(ref_embeds), where)
        parity.raise_if_failed("exported decoder graphs")
        return parity.diffs

    def _record(
        self, parity: ParityRecorder, graph: str, what: str, ref: np.ndarray, got: np.ndarray, where: str
    ) -> None:
        parity.record(graph, what, ref, got, where, relative_tolerance(self.ex.atol, ref))

    @torch.inference_mode()
    def _reference_embeds(self, texts: Sequence[str], labels: Sequence[str], threshold: float) -> np.ndarray:
        """gliner's decoder inputs for the batch (prompt mode: what its selection would
        give, projected as span mode does: gliner itself fails there)."""
        batch = self.ex.reference_batch(texts, labels)
        if self.ex.config.family == "token":
            return self._reference_token_embeds(batch, threshold)
        out = self.core(**batch, threshold=threshold)
        if self.mode == "prompt":
            return self._projected_prompts(out)
        tokens, _ = self.core.get_raw_decoder_inputs(out.decoder_embedding, out.decoder_embedding_mask)
        return tokens.float().numpy()

    def _projected_prompts(self, out: Any) -> np.ndarray:
        kept = out.prompts_embedding[out.prompts_embedding_mask.bool()]
        if self.projection is not None:
            kept = self.projection(kept)
        return kept.unsqueeze(1).float().numpy()

    def _reference_token_embeds(self, batch: dict[str, Any], threshold: float) -> np.ndarray:
        """The token decoder's inputs from gliner's own forward with the runtime's two
        corrections (`corrected_token_decoder`)."""
        with corrected_token_decoder(self.model, threshold):
            out = self.core(**batch, threshold=threshold)
        if out.decoder_embedding is None:
            return np.zeros((0, 1, self.lm.config.n_embd), dtype=np.float32)
        tokens, _ = self.core.get_raw_decoder_inputs(out.decoder_embedding, out.decoder_embedding_mask)
        return tokens.float().numpy()

    @torch.inference_mode()
    def _check_generation(
        self,
        sessions: dict[str, ort.InferenceSession],
        parity: ParityRecorder,
        p: Prefixes,
        embeds: torch.Tensor,
        where: str,
    ) -> None:
        """Prefix and cached steps against the Hugging Face decoder run on gliner's inputs."""
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)
        hf = self.lm(inputs_embeds=embeds, attention_mask=mask, use_cache=True)
        logits, present = sessions["decoder_prefix"].run(None, self._prefix_feeds(p))
        self._record(parity, "decoder_prefix", "logits", hf.logits[:, -1].float().numpy(), logits, where)
        past = hf.past_key_values
        for step in range(_STEPS):
            token = hf.logits[:, -1].argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            hf = self.lm(input_ids=token, attention_mask=mask, past_key_values=past, use_cache=True)
            past = hf.past_key_values
            logits, present = sessions["decoder_step"].run(
                None, {"input_ids": token.numpy(), "past": present}
            )
            ref = hf.logits[:, -1].float().numpy()
            self._record(parity, "decoder_step", "logits", ref, logits, f"{where}, step {step + 1}")


@contextlib.contextmanager
def corrected_token_decoder(model: Any, threshold: float) -> Iterator[None]:
    """gliner's UniEncoderTokenDecoder with the runtime's corrections fed into its
    `select_token_decoder_embedding` (README, "The token-level decoder"); all else is its
    own code. Span mode: the span logits are shifted by logit(threshold), so its fixed
    0.5 selects at `threshold` (0 < threshold < 1), and the decoder tokens' 1-based word
    indices are shifted by one to match its 0-based word spans. Prompt mode: the label
    representations are projected (when the widths differ) and made 4-D, as its
    `get_raw_decoder_inputs` unpacks."""
    core = model.model
    original = core.select_token_decoder_embedding
    shift = math.log(threshold / (1 - threshold))

    def select(prompts_embedding: Any, prompts_embedding_mask: Any, **kw: Any) -> Any:
        if core.config.decoder_mode == "prompt":
            rep, mask, idx = original(prompts_embedding, prompts_embedding_mask, **kw)
            if hasattr(core, "_enc2dec_proj"):
                rep = core._enc2dec_proj(rep)
            return rep.unsqueeze(2), mask.unsqueeze(-1), idx
        kw["span_logits"] = kw["span_logits"] - shift
        if kw.get("decoder_words_mask") is not None:
            kw["decoder_words_mask"] = kw["decoder_words_mask"] - 1
        return original(prompts_embedding, prompts_embedding_mask, **kw)

    core.select_token_decoder_embedding = select
    try:
        yield
    finally:
        del core.select_token_decoder_embedding


def export_decoder(
    ctx: ExportContext,
) -> tuple[dict[str, GraphEntry], dict[str, dict[str, float]], dict[str, Any]]:
    """Write the decoder tokenizer and graphs into the export directory and validate them."""
    dec = DecoderExport(ctx)
    dec.write_tokenizer()
    graphs = dec.trace()
    ctx.log("validating the decoder against torch ...")
    diffs = dec.validate(graphs)
    return graphs, diffs, dec.settings()
