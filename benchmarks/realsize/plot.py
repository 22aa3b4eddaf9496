"""real_size.png: batch-1 latency against the model's parameters, one line per engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STYLE = {
    "gliner torch": ("#d62728", "-"),
    "gliner onnx fp32": ("#ff7f0e", "-"),
    "gliner onnx int8": ("#ff7f0e", "--"),
    "ours fp32": ("#1f77b4", "-"),
    "ours int8": ("#1f77b4", "--"),
}


def points(record: dict[str, Any], case: str = "batch1") -> dict[str, list[tuple[float, float, str]]]:
    """Engine -> [(parameters in millions, p50 ms, shape)], uni-encoders only, by parameters."""
    lines: dict[str, list[tuple[float, float, str]]] = {}
    for name, sec in record["shapes"].items():
        lat = sec.get("latency", {}).get(case)
        if not lat or sec["shape"]["arch"] != "uniencoder_span":
            continue
        params = sec["checkpoint"]["parameters"] / 1e6
        for engine, r in lat["engines"].items():
            if "p50_ms" in r:
                lines.setdefault(engine, []).append((params, r["p50_ms"], name))
    return {e: sorted(p) for e, p in lines.items()}


def plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = points(record)
    if not lines:
        return
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for engine, pts in lines.items():
        color, style = STYLE.get(engine, ("grey", ":"))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, marker="o", label=engine)
    labelled: dict[str, tuple[float, float]] = {}
    for pts in lines.values():
        for x, y, shape in pts:
            labelled[shape] = (x, max(y, labelled.get(shape, (x, 0))[1]))
    for shape, (x, y) in labelled.items():
        ax.annotate(shape, (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("p50 latency (ms)")
    threads = record.get("settings", {}).get("threads")
    ax.set_title(f"Batch 1, ~60 words, 5 labels, {threads} threads: latency against model size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
