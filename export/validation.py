"""Validation of the exported entity graphs against torch and against gliner's own forward.

Per case of `samples.CASES` (batches of 1 and 3, short and long texts, 1 to 7 labels), the
graphs run under ONNX Runtime through the runtime's own pipeline stage: pre-processing must
equal gliner's collated batch exactly; every graph, fed as the runtime feeds it, must give
its torch wrapper's outputs on the same feeds; and the chained graphs must give gliner's
scores. Every failure is collected, then raised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gliner_onnx.errors import ExportError
from gliner_onnx.manifest import GraphEntry

from . import samples
from .context import CaseRun, ExportContext
from .graph_runs import OnnxGraphs
from .memory import validation_session_options
from .parity import ParityRecorder


def validate(ctx: ExportContext, graphs: dict[str, GraphEntry]) -> ParityRecorder:
    """Every graph against its torch module, and the whole chain against gliner's forward,
    the graphs run by the runtime's own pipeline stage (`graph_runs.py`)."""
    import onnxruntime as ort

    sessions = {
        name: ort.InferenceSession(
            str(ctx.dir / g.file), validation_session_options(), providers=["CPUExecutionProvider"]
        )
        for name, g in graphs.items()
    }
    parity = ParityRecorder([*graphs, "end_to_end"])
    for i, (texts, labels) in enumerate(samples.CASES):
        where = f"case {i} (batch {len(texts)}, {len(labels)} labels)"
        batch = ctx.reference_batch(texts, labels)
        contexts = ctx.contexts(texts, labels)
        ran = ctx.run_case(contexts, OnnxGraphs(ctx, sessions, parity, where))
        check_preprocessing(ctx, batch, ran.feeds["text_encoder"], where)
        with torch.inference_mode():
            ctx.config.check_end_to_end(
                ctx, CaseRun(contexts, batch, ran, ran.feeds, ran.outs, where), parity
            )
    parity.raise_if_failed("exported graphs")
    return parity


def check_preprocessing(
    ctx: ExportContext, batch: dict[str, Any], feeds: dict[str, np.ndarray], where: str
) -> None:
    """Our text feeds equal gliner's collated batch exactly."""
    ref = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "words_mask": batch["words_mask"],
        "text_lengths": batch["text_lengths"],
    }
    if ctx.config.family == "span":
        ref["span_idx"] = batch["span_idx"] * batch["span_mask"].unsqueeze(-1)
    for name, r in ref.items():
        r_np = r.numpy().astype(np.int64)
        if r_np.shape != feeds[name].shape or not np.array_equal(r_np, feeds[name]):
            raise ExportError(f"pre-processing differs from gliner's for {name!r} on {where}")


def parity_line(parity: ParityRecorder, atol: float, against: str = "gliner torch") -> str:
    """One line saying what was checked: the end-to-end worst case, the tolerance, the cases."""
    e2e = parity.diffs.get("end_to_end", {})
    worst = max(e2e.values(), default=0.0)
    return (
        f"parity checked against {against}: end-to-end max |diff| {worst:.2e} <= atol {atol:.0e} "
        f"on {len(parity.cases)} cases, every graph within tolerance"
    )
