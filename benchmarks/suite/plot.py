"""The suite's PNG plot (matplotlib, imported only here)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from .report import p50


def plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = record["results"]
    fig, axes = plt.subplots(2, 3, figsize=(17, 10))
    colors = {"torch": "#d62728", "gliner_onnx": "#ff7f0e", "session": "#bcbd22", "ours": "#1f77b4"}
    family = record["engine_families"]

    def bars(ax: Any, data: dict[str, Any], key: str, title: str, unit: str, err: bool = False) -> None:
        items = [(n, r) for n, r in data.items() if key in r]
        names = [n for n, _ in items]
        vals = [r[key] for _, r in items]
        ends = [r["p90_ms"] if err else r[key] for _, r in items]
        yerr = [[0] * len(items), [e - v for e, v in zip(ends, vals)]] if err else None
        ax.barh(names, vals, xerr=yerr, color=[colors.get(family.get(n, ""), "grey") for n in names])
        for i, (v, e) in enumerate(zip(vals, ends)):
            ax.text(e, i, f" {v:,.1f}", va="center", fontsize=8)
        ax.set_xlim(0, max(ends, default=1) * 1.15)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel(unit)

    if "batch1" in res:
        title = "Batch 1: ~60 words, 5 labels (p50, whisker p90)"
        bars(axes[0, 0], res["batch1"], "p50_ms", title, "ms", err=True)
    if "throughput" in res:
        bars(axes[0, 1], res["throughput"], "texts_per_s", "Throughput: 32 texts, batch 8", "texts / s")
    if "rss" in res:
        bars(axes[0, 2], res["rss"], "peak_mb", "Peak RSS: fresh process, load + 1 prediction", "MB")
    for ax, key, title in (
        (axes[1, 0], "labels_uni", "Labels, uni-encoder span (batch 1)"),
        (axes[1, 1], "labels_bi", "Labels, bi-encoder span (batch 1)"),
    ):
        if key not in res:
            continue
        counts = list(res[key])
        first = res[key][counts[0]]["engines"]
        for name in first:
            pts = [(int(n), res[key][n]["engines"][name].get("p50_ms")) for n in counts]
            pts = [(x, y) for x, y in pts if y is not None]
            style = "--" if "uncached" in name or name.startswith("gliner session") else "-"
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], style, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([int(n) for n in counts], [str(n) for n in counts])
        ax.set_xlabel("number of labels")
        ax.set_ylabel("p50 ms")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    if "long_text" in res:
        ax = axes[1, 2]
        counts = list(res["long_text"])
        names = list(res["long_text"][counts[0]]["engines"])
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            ys = [p50(res["long_text"][n]["engines"].get(name)) or 0.0 for n in counts]
            xs = [j + i * width for j in range(len(counts))]
            ax.bar(xs, ys, width, label=name, color=colors.get(family.get(name, ""), None))
        ax.set_xticks(
            [j + 0.4 - width / 2 for j in range(len(counts))],
            [f"{res['long_text'][n]['words']} words" for n in counts],
        )
        ax.set_ylabel("p50 ms")
        ax.set_title("Long texts, batch 1, 5 labels (gliner truncates)")
        ax.legend(fontsize=7)
    m = record["machine"]
    noise = record.get("noise", {})
    caption = (
        f"{m['cpu_model']}, {m['cpus']} CPUs, {record['threads']} threads per engine; "
        f"onnxruntime {record['versions']['onnxruntime']}, torch {record['versions']['torch']}, "
        f"gliner {record['versions']['gliner']}; checkpoint: {record['checkpoint']}; other processes' "
        f"share of the CPUs during the timed cases: {noise.get('mean', 0):.0%} mean, "
        f"{noise.get('max', 0):.0%} max\n{record['command']}"
    )
    lines = [line for part in caption.split("\n") for line in textwrap.wrap(part, 190)]
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=8, va="bottom")
    fig.suptitle("gliner-onnx benchmark suite (same checkpoint, same process)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
