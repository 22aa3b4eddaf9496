"""The one parity recorder of the export: max abs differences per graph output, and every
failure collected before raising (optimum's `_run_validation` collects, then raises)."""

from __future__ import annotations

import numpy as np

from gliner_onnx.errors import ParityError


def relative_tolerance(atol: float, ref: np.ndarray) -> float:
    """`atol` scaled by the reference's magnitude (representations, logits), at least `atol`."""
    return atol * max(1.0, float(np.abs(ref).max(initial=0)))


class ParityRecorder:
    """Compares outputs with their reference; `diffs[graph][output]` is the worst difference
    seen over all cases, `failures` says what broke where."""

    def __init__(self, graphs: tuple[str, ...] | list[str] = ()) -> None:
        self.diffs: dict[str, dict[str, float]] = {name: {} for name in graphs}
        self.failures: list[str] = []
        self.cases: set[str] = set()

    def record(
        self,
        graph: str,
        output: str,
        ref: np.ndarray,
        got: np.ndarray,
        where: str,
        tol: float,
        label: str | None = None,
    ) -> float:
        """Record one comparison; a shape mismatch, non-finite values or a difference above
        `tol` is a failure. Returns the difference (inf when it cannot be measured)."""
        what = label or f"{graph}.{output}"
        self.cases.add(where)
        slot = self.diffs.setdefault(graph, {})
        if ref.shape != got.shape:
            self.failures.append(f"{what} on {where}: shape {got.shape} != reference {ref.shape}")
            return float("inf")
        if not np.all(np.isfinite(got)):
            self.failures.append(f"{what} on {where}: non-finite values")
            return float("inf")
        d = float(np.abs(ref.astype(np.float64) - got.astype(np.float64)).max(initial=0.0))
        slot[output] = max(slot.get(output, 0.0), d)
        if not d <= tol:
            self.failures.append(f"{what} on {where}: max abs diff {d:.3e} > {tol:.3e}")
        return d

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def raise_if_failed(self, what: str) -> None:
        if self.failures:
            raise ParityError(f"{what} disagree with torch:\n  " + "\n  ".join(self.failures))
