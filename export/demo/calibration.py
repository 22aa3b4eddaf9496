"""Calibration of a random-init GLiNER's heads (the demo checkpoint's, the tests'): their
logits centred and rescaled so that scores spread over (0, 1) instead of all near 0.5.

The calibration texts are lines of the package's corpus (`samples.corpus_lines`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..samples import corpus_lines

if TYPE_CHECKING:  # pragma: no cover
    import gliner


def _last_linear(module: Any):
    import torch

    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(f"no nn.Linear in {type(module).__name__}")
    return linears[-1]


def _head_linears(core: Any) -> tuple[str, list[Any]]:
    """``("token", [scorer's last Linear])`` or ``("span", [prompt Linear, span Linear])``."""
    if hasattr(core, "scorer"):
        return "token", [_last_linear(core.scorer)]
    if hasattr(core, "prompt_rep_layer") and hasattr(core, "span_rep_layer"):
        span_layer = getattr(core.span_rep_layer, "span_rep_layer", core.span_rep_layer)
        return "span", [_last_linear(core.prompt_rep_layer), _last_linear(span_layer)]
    raise ValueError(f"don't know the scoring head of {type(core).__name__}")


def scale_head_logits(model: gliner.GLiNER, scale: float) -> list[str]:
    """Multiply the logits of a torch GLiNER's scoring head by ``scale`` (> 0), in place.

    * span models (``UniEncoderSpanModel``, ``BiEncoderSpanModel``, ...): the logits are
      ``einsum(span_rep, prompt_rep)``; the weight and bias of the last ``nn.Linear`` of
      ``prompt_rep_layer`` and of the span representation layer (``out_project`` for the
      marker modes) are each multiplied by ``sqrt(scale)``. Only positively homogeneous
      ops (ReLU, reshapes) follow those layers in every span mode, so the logits are
      multiplied by exactly ``scale``.
    * token-level models: the last ``nn.Linear`` of ``scorer.out_mlp`` (which outputs the
      start/end/inside logits) is multiplied by ``scale``.

    Returns the qualified names of the modified ``nn.Linear`` modules.
    """
    import torch

    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    core = model.model
    kind, linears = _head_linears(core)
    factor = math.sqrt(scale) if kind == "span" else scale
    with torch.no_grad():
        for linear in linears:
            linear.weight.mul_(factor)
            if linear.bias is not None:
                linear.bias.mul_(factor)
    names = {id(m): n for n, m in core.named_modules()}
    return [names[id(linear)] for linear in linears]


# Calibration data for :func:`calibrate_head`: corpus sentences of several scripts, each
# run with every one of these label sets (uni-encoder prompts depend on the label set).
CALIBRATION_LABEL_SETS: tuple[tuple[str, ...], ...] = (
    ("person", "organization", "location", "date"),
    ("city", "company", "country"),
    ("event", "product", "award", "disease", "language"),
)


def _calibration_texts() -> list[str]:
    lines = corpus_lines()
    return lines[:40:2] + lines[70:110:4]


def _capture_head(
    model: Any, texts: Sequence[str], label_sets: Sequence[Sequence[str]]
) -> dict[str, list[Any]]:
    """Run the model on ``texts`` (batches of 8) and collect, per batch, what the scoring
    head saw. Relex models run without their relation layers (the entity logits do not
    depend on them; gliner would score every pair of selected entities, and its
    attention layers crash on a batch with none)."""
    import torch

    core = model.model
    kind, _ = _head_linears(core)
    seen: dict[str, list[Any]] = {"span_mask": [], "span_rep": [], "out": []}
    hooks = [
        core.register_forward_pre_hook(
            lambda _m, _a, kw: seen["span_mask"].append(kw.get("span_mask")), with_kwargs=True
        ),
        core.register_forward_hook(lambda _m, _a, out: seen["out"].append(out)),
    ]
    if kind == "span" or getattr(model.config, "represent_spans", False):  # token decoder: span_logits
        hooks.append(
            core.span_rep_layer.register_forward_hook(lambda _m, _a, out: seen["span_rep"].append(out))
        )
    from ..relation_wrappers import relation_layers_removed

    try:
        with torch.no_grad(), relation_layers_removed(core) as relex:
            for labels in label_sets:
                if relex or getattr(model.config, "represent_spans", False):
                    _run_batches(model, list(texts), list(labels))
                else:
                    model.inference(list(texts), list(labels), threshold=0.5, batch_size=8)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _run_batches(model: Any, texts: list[str], labels: list[str], batch_size: int = 8) -> None:
    """gliner's forward on texts in batches, without decoding: relex decoding needs the
    relation outputs that the stashed relation layers would make, and the token decoder's
    decoding fails on spans its batch padding yields (IndexError)."""
    relex = getattr(model.config, "relations_layer", None) is not None
    prepared = model.prepare_batch(texts, labels, **({"relations": []} if relex else {}))
    collator = model.create_collator()
    for lo in range(0, len(prepared["input_x"]), batch_size):
        chunk = prepared["input_x"][lo : lo + batch_size]
        if relex:
            batch = model.collate_batch(chunk, prepared["entity_types"], collator, [])
        else:
            batch = model.collate_batch(chunk, prepared["entity_types"], collator)
        model.run_batch(batch, threshold=0.5)


def _span_head_stats(seen: dict[str, list[Any]]):
    """Mean span and label representations, and the logits of the valid (span, label)s."""
    import torch

    reps, prompts, logits = [], [], []
    for span_mask, span_rep, out in zip(seen["span_mask"], seen["span_rep"], seen["out"]):
        if isinstance(span_rep, tuple):  # span layers with a context encoder
            span_rep = span_rep[0]
        b, length, width, _ = span_rep.shape
        valid = span_mask.reshape(b, length, width).bool()
        label_ok = out.prompts_embedding_mask.bool()
        pair = valid[..., None] & label_ok[:, None, None, :]
        reps.append(span_rep[valid])
        prompts.append(out.prompts_embedding[label_ok])
        logits.append(out.logits[pair])
    return (
        torch.cat(reps).double().mean(0),
        torch.cat(prompts).double().mean(0),
        torch.cat(logits).double(),
    )


def head_scores(model: gliner.GLiNER, texts: Sequence[str], labels: Sequence[str]):
    """Sigmoid scores of every valid (span, label) -- ``(word, label, start/end/inside)``
    for token-level models -- of a torch GLiNER on ``texts``, as one flat float tensor.

    Unlike ``predict_entities(..., flat_ner=False, multi_label=True, threshold=0)``, which
    still drops spans that cross a better-scored one, nothing is filtered.
    """
    import torch

    seen = _capture_head(model, texts, [labels])
    if _head_linears(model.model)[0] == "span":
        *_, logits = _span_head_stats(seen)
    else:
        chunks = []
        for out in seen["out"]:
            pair = out.mask.bool()[:, :, None] & out.prompts_embedding_mask.bool()[:, None, :]
            chunks.append(out.logits[pair].flatten())
        logits = torch.cat(chunks)
    return torch.sigmoid(logits.float())


def calibrate_head(
    model: gliner.GLiNER,
    logit_std: float,
    *,
    texts: Sequence[str] | None = None,
    label_sets: Sequence[Sequence[str]] = CALIBRATION_LABEL_SETS,
) -> None:
    """Centre and rescale a torch GLiNER's head so its logits are ~ N(0, logit_std²).

    A randomly initialised GLiNER gives every (span, label) nearly the same logit, and
    not around 0: the span and label representations share a large common component,
    so the logits sit at e.g. 0.03 +- 0.008 (all scores ~0.51) -- scaling alone would
    push *all* scores to 0 or to 1. Measured on ``texts`` (default: 30 built-in corpus
    sentences), each run with every label set of ``label_sets``:

    * span models: the mean span representation (over valid spans) is subtracted from
      the bias of the span layer's last ``nn.Linear`` and the mean label representation
      from the bias of ``prompt_rep_layer``'s last ``nn.Linear``. With both sides
      centred, a new text's mean logit is a product of two small deviations from the
      calibration means (centring one side only leaves a first-order offset of about
      half a standard deviation per text). Then :func:`scale_head_logits` scales the
      logits, measured again after the centring, to standard deviation ``logit_std``.
    * token-level models: each of the 3 outputs (start, end, inside) of the scorer's last
      ``nn.Linear`` is shifted and scaled to mean 0 and standard deviation ``logit_std``
      over the valid (word, label) pairs.

    Deterministic for a given model and texts (up to float rounding of the CPU kernels).
    """
    import torch

    if not (logit_std > 0 and math.isfinite(logit_std)):
        raise ValueError(f"logit_std must be finite and > 0, got {logit_std}")
    texts = _calibration_texts() if texts is None else list(texts)
    core = model.model
    kind, linears = _head_linears(core)
    was_training = core.training
    model.eval()
    try:
        if kind == "span":
            mean_span, mean_prompt, _ = _span_head_stats(_capture_head(model, texts, label_sets))
            with torch.no_grad():
                for linear, mean in zip(linears, (mean_prompt, mean_span)):
                    if linear.bias is None:
                        raise ValueError("the head's last Linear layers need a bias to centre")
                    linear.bias.sub_(mean.to(linear.bias.dtype))
            *_, logits = _span_head_stats(_capture_head(model, texts, label_sets))
            std = float(logits.std())
            if not std > 0:
                raise ValueError("the calibration logits are constant")
            scale_head_logits(model, logit_std / std)
        else:
            (linear,) = linears
            seen = _capture_head(model, texts, label_sets)
            chunks = []
            for out in seen["out"]:
                pair = out.mask.bool()[:, :, None] & out.prompts_embedding_mask.bool()[:, None, :]
                chunks.append(out.logits[pair])  # (n, 3)
            channels = torch.cat(chunks).double()
            channel_mean, channel_std = channels.mean(0), channels.std(0)
            if not bool((channel_std > 0).all()):
                raise ValueError("the calibration logits are constant")
            factor = logit_std / channel_std
            with torch.no_grad():
                w = linear.weight.double() * factor[:, None]
                b = (linear.bias.double() - channel_mean) * factor
                linear.weight.copy_(w.to(linear.weight.dtype))
                linear.bias.copy_(b.to(linear.bias.dtype))
    finally:
        core.train(was_training)


def calibrate_span_logits(
    model: gliner.GLiNER,
    logit_std: float,
    *,
    texts: Sequence[str] | None = None,
    label_sets: Sequence[Sequence[str]] = CALIBRATION_LABEL_SETS,
) -> None:
    """Token decoder (``represent_spans``): centre and rescale the span logits
    (``einsum(span_rep, prompts)``) to ~ N(0, logit_std²) over the candidate spans, as
    :func:`calibrate_head` does for the token scores (run it first: the candidates are
    the spans the token scores find at 0.5). The mean span representation is taken
    from the bias of the span layer's last ``nn.Linear``, then its weight and bias are
    scaled: the logits are linear in both."""
    import torch

    texts = _calibration_texts() if texts is None else list(texts)
    linear = _last_linear(model.model.span_rep_layer)

    def capture() -> tuple[torch.Tensor, torch.Tensor]:
        seen = _capture_head(model, texts, label_sets)
        outs = seen["out"]
        reps = torch.cat([r[o.span_mask.bool()] for r, o in zip(seen["span_rep"], outs)])
        pairs = [o.span_mask.bool()[:, :, None] & o.prompts_embedding_mask.bool()[:, None, :] for o in outs]
        logits = torch.cat([o.span_logits[p] for o, p in zip(outs, pairs)])
        return reps.double(), logits.double()

    reps, _ = capture()
    if len(reps) == 0:
        raise ValueError("no candidate span at 0.5 to calibrate the span logits on")
    with torch.no_grad():
        linear.bias.sub_(reps.mean(0).to(linear.bias.dtype))
    _, logits = capture()
    std = float(logits.std())
    if not std > 0:
        raise ValueError("the calibration span logits are constant")
    with torch.no_grad():
        linear.weight.mul_(logit_std / std)
        linear.bias.mul_(logit_std / std)


def calibrate_relations(
    model: gliner.GLiNER, logit_std: float, *, texts: Sequence[str] | None = None
) -> None:
    """Centre and rescale a relex GLiNER's relation logits to about N(0, logit_std²).

    Relation logits are ``pair_rep_layer(cat(head, tail)) . rel_prompt`` with the raw
    encoder states at ``<<REL>>`` as prompts: as for the entity head, the mean pair
    representation (over the pairs seen on ``texts``) is subtracted from the bias of
    ``pair_rep_layer``'s last ``nn.Linear``, then that layer is scaled so the logits have
    standard deviation ``logit_std``. Checkpoints scored by a triples layer are left as
    they are. Call after :func:`calibrate_head` (entity selection feeds the pairs).
    """
    import torch

    core = model.model
    if not hasattr(core, "pair_rep_layer"):
        return
    last = _last_linear(core.pair_rep_layer)
    # Few short texts and a high entity threshold: gliner scores every selected pair.
    texts = [t for t in _calibration_texts() if len(t) < 120][:6] if texts is None else list(texts)
    relations = ["works for", "located in", "born in", "founded", "part of"]

    def capture(threshold: float) -> tuple[Any, Any]:
        reps, logits = [], []
        hooks = [
            core.pair_rep_layer.register_forward_hook(lambda _m, _a, out: reps.append(out)),
            core.register_forward_hook(lambda _m, _a, out: logits.append(out)),
        ]
        try:
            with torch.no_grad():
                labels = ["person", "location", "organization"]
                # adjacency 0: every pair (attention-style adjacencies are ~1/E each)
                model.inference(
                    texts, labels, relations=relations, threshold=threshold, adjacency_threshold=0.0
                )
        finally:
            for hook in hooks:
                hook.remove()
        valid_reps = torch.cat([r[o.rel_mask.bool()] for r, o in zip(reps, logits)])
        valid_logits = torch.cat([o.rel_logits[o.rel_mask.bool()].flatten() for o in logits])
        return valid_reps.double().mean(0), valid_logits.double()

    was_training = core.training
    model.eval()
    try:
        # The highest entity threshold that still gives enough pairs (token models need
        # start, end and inside above it).
        for threshold in (0.9, 0.8, 0.7, 0.6, 0.5, 0.3):
            mean_rep, logits = capture(threshold)
            if logits.numel() >= 200:
                break
        with torch.no_grad():
            last.bias.sub_(mean_rep.to(last.bias.dtype))
        _, logits = capture(threshold)
        std = float(logits.std()) if logits.numel() > 1 else 0.0
        if not std > 0:
            raise ValueError("no pair of entities to calibrate the relation logits on")
        with torch.no_grad():
            last.weight.mul_(logit_std / std)
            last.bias.mul_(logit_std / std)
    finally:
        core.train(was_training)
