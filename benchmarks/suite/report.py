"""The suite's report: headline ratios and the markdown tables printed after a run."""

from __future__ import annotations

from typing import Any

from .data import CORPUS


def p50(r: dict[str, Any] | None) -> float | None:
    return r.get("p50_ms") if r else None


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """Headline ratios (time over time; below 1 means ours is faster or smaller)."""
    out: dict[str, float] = {}

    def put(key: str, a: float | None, b: float | None) -> None:
        if a is not None and b:
            out[key] = a / b

    for case in ("batch1", "throughput"):
        r = results.get(case, {})
        for prec in ("fp32", "int8"):  # the share of gliner's ONNX time spent in its session
            put(
                f"{case}: gliner session {prec} / gliner onnx {prec}",
                p50(r.get(f"gliner session {prec}")),
                p50(r.get(f"gliner onnx {prec}")),
            )
        for ours in (n for n in r if n.startswith("ours ")):
            for other in ("gliner torch", "gliner onnx fp32", "gliner session fp32"):
                put(f"{case}: {ours} / {other}", p50(r.get(ours)), p50(r.get(other)))
            if ours == "ours int8":
                for other in ("gliner onnx int8", "gliner session int8"):
                    put(f"{case}: {ours} / {other}", p50(r.get(ours)), p50(r.get(other)))
    bi = results.get("labels_bi", {})
    if len(bi) > 1:
        lo, hi = next(iter(bi)), list(bi)[-1]
        for name in bi[hi]["engines"]:
            put(
                f"bi-encoder: {name} {hi} labels / {lo} labels",
                p50(bi[hi]["engines"][name]),
                p50(bi[lo]["engines"][name]),
            )
    rss = results.get("rss", {})
    torch_peak = rss.get("gliner torch", {}).get("peak_mb")
    for name, r in rss.items():
        if name != "gliner torch":
            put(f"peak RSS: {name} / gliner torch", r.get("peak_mb"), torch_peak)
    return out


def fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "–"
    if "error" in r:
        return "error"
    return fmt(r.get("p50_ms"))


def markdown(record: dict[str, Any]) -> str:
    res = record["results"]
    lines: list[str] = []
    add = lines.append
    m = record["machine"]
    flags = ", ".join(m.get("cpu_flags", [])) or "not recorded"
    add(f"Machine: {m['cpu_model']}, {m['cpus']} CPUs ({flags}); {record['threads']} threads per engine.")
    git = record.get("git")
    if git:
        state = "dirty tree: not publishable" if git["dirty"] else "clean tree"
        add(f"Commit: {git['commit']} ({state}).")
    if "noise" in record:
        n = record["noise"]
        add(
            f"Other processes' share of the CPUs: {n['before_start']:.0%} before the start, "
            f"{n['mean']:.0%} on average during the timed cases, at most {n['max']:.0%} "
            f"({n['worst_case']})."
        )
    add(f"Command: `{record['command']}`")
    if "batch1" in res:
        add("\n### Batch 1 (one ~60-word text, 5 labels) and throughput (32 texts, batch 8)\n")
        add("| engine | batch 1 p50 (ms) | batch 1 p90 (ms) | x gliner torch | 32 texts (ms) | texts/s |")
        add("|---|---|---|---|---|---|")
        torch_p50 = p50(res["batch1"].get("gliner torch"))
        for name, r in res["batch1"].items():
            t = res.get("throughput", {}).get(name, {})
            rel = fmt(r["p50_ms"] / torch_p50, 2) if "p50_ms" in r and torch_p50 else "–"
            tput = fmt(t.get("texts_per_s"))
            add(f"| {name} | {cell(r)} | {fmt(r.get('p90_ms'))} | {rel} | {cell(t)} | {tput} |")
    for key, title in (("labels_uni", "uni-encoder span"), ("labels_bi", "bi-encoder span")):
        if key not in res:
            continue
        counts = list(res[key])
        add(f"\n### Label scaling, {title}, batch 1 (p50 ms)\n")
        head = [f"{n}{'*' if not res[key][n].get('fits_subword_limit', True) else ''}" for n in counts]
        add("| engine | " + " | ".join(head) + " |")
        add("|---|" + "---|" * len(counts))
        for name in res[key][counts[0]]["engines"]:
            add(f"| {name} | " + " | ".join(cell(res[key][n]["engines"].get(name)) for n in counts) + " |")
        for name, r in res[key][counts[0]]["engines"].items():
            if "encode_labels_ms" in r:  # the one-off label encoding of a cached engine
                once = [fmt(res[key][n]["engines"][name].get("encode_labels_ms")) for n in counts]
                add(f"| {name.removesuffix(' cached')}: encode_labels, once | " + " | ".join(once) + " |")
        if key == "labels_uni" and any(h.endswith("*") for h in head):
            add("\n\\* prompt + text exceed the subword limit (gliner truncates the text, ours windows it).")
    if "long_text" in res:
        counts = list(res["long_text"])
        add("\n### Long texts, batch 1, 5 labels (p50 ms)\n")
        rows = res["long_text"].values()
        lengths = [f"{r['words']} words ({r['gliner_words']} gliner words)" for r in rows]
        add("| engine | " + " | ".join(lengths) + " |")
        add("|---|" + "---|" * len(counts))
        for name in res["long_text"][counts[0]]["engines"]:
            row = " | ".join(cell(res["long_text"][n]["engines"].get(name)) for n in counts)
            add(f"| {name} | {row} |")
    if "rss" in res:
        add("\n### Peak resident memory, fresh process: load + one prediction (MB)\n")
        add("| engine | after imports | after load | peak | torch imported |")
        add("|---|---|---|---|---|")
        for name, r in res["rss"].items():
            if "error" in r:
                add(f"| {name} | error: {r['error']} | | | |")
                continue
            add(
                f"| {name} | {fmt(r['after_import_mb'], 0)} | {fmt(r['after_load_mb'], 0)} | "
                f"{fmt(r['peak_mb'], 0)} | {'yes' if r['torch_imported'] else 'no'} |"
            )
    if "agreement" in res:
        ag = res["agreement"]
        add(f"\n### Agreement with ours on {len(CORPUS)} texts (threshold {ag['threshold']}, exact spans)\n")
        add("| model | engine | precision | recall | F1 | entities | identical texts |")
        add("|---|---|---|---|---|---|---|")
        for arch in ("uniencoder_span", "biencoder_span"):
            for name, r in ag[arch].items():
                ref = " (reference)" if name == ag["reference"][arch] else ""
                add(
                    f"| {arch} | {name}{ref} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | "
                    f"{r['entities']} | {r['identical_texts']}/{r['texts']} |"
                )
    if record.get("ratios"):
        add("\n### Ratios (time or memory over time or memory; < 1: ours is faster or smaller)\n")
        add("| ratio | value |")
        add("|---|---|")
        for k, v in record["ratios"].items():
            add(f"| {k} | {v:.2f} |")
    if record.get("cases"):
        kept: dict[str, float] = {}
        for a in record["cases"]:
            kept[a["case"]] = min(a["others_cpu_share"], kept.get(a["case"], 1.0))
        add("\nOther processes' share of the CPUs per timed case (the attempt kept): ")
        add(", ".join(f"{c} {v:.0%}" for c, v in kept.items()) + ".")
    if record.get("notes"):
        add("")
        for note in record["notes"]:
            add(f"- {note}")
    return "\n".join(lines)
