"""`gliner-onnx`: run an export with the torch-free runtime.

    gliner-onnx predict EXPORT_DIR --labels person,location "Some text"
    cat texts.txt | gliner-onnx predict EXPORT_DIR --labels person,location -
    gliner-onnx info EXPORT_DIR
    gliner-onnx bench EXPORT_DIR [--json bench.json]
    gliner-onnx serve EXPORT_DIR [--port 8000]                        (the `serve` extra)
    gliner-onnx serve EXPORT_DIR --ray [--replicas N]                 (the `ray` extra)
    gliner-onnx annotate EXPORT_DIR --input corpus.jsonl --output DIR --labels a,b

`predict` prints one JSON object per input text: {"text": ..., "entities": [...]}.
From stdin it reads one text per line, or one JSON object per line with a "text"
field (and optionally "labels", a list or comma-separated string); the object is
echoed back with "entities" added. Relex exports also print "relations" (gliner's
relation dicts), for the relation labels given with --relations (or per line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from .errors import GlinerOnnxError
from .serve.command import SPINNING_HELP, add_serve_parser, run_serve

if TYPE_CHECKING:
    from .manifest import Manifest


def _labels(value: str) -> list[str]:
    labels = [p.strip() for p in value.split(",") if p.strip()]
    if not labels:
        raise argparse.ArgumentTypeError("give at least one label, e.g. --labels person,location")
    return labels


def _threshold(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= t <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return t


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gliner-onnx", description="Run GLiNER exports with ONNX Runtime, no torch."
    )
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser(
        "predict",
        help="predict entities, printing JSON lines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pr.add_argument("export_dir", help="a directory written by gliner-export, or a Hub repo id")
    pr.add_argument("text", nargs="?", default="-", help="the text, or - (default) to read lines from stdin")
    g = pr.add_argument_group("decoding")
    g.add_argument("--labels", type=_labels, required=True, help="comma-separated entity labels")
    g.add_argument(
        "--threshold", type=_threshold, default=0.5, help="score threshold in [0, 1] (default 0.5)"
    )
    g.add_argument("--nested", action="store_true", help="allow nested entities (flat_ner=False)")
    g.add_argument("--multi-label", action="store_true", help="allow one span to carry several labels")
    x = pr.add_argument_group("relations (relex exports)")
    x.add_argument("--relations", type=_labels, default=None, help="comma-separated relation labels")
    x.add_argument(
        "--relation-threshold",
        type=_threshold,
        default=None,
        help="relation score threshold (default: --threshold)",
    )
    x.add_argument(
        "--adjacency-threshold",
        type=_threshold,
        default=None,
        help="entity-pair adjacency threshold (default: --threshold)",
    )
    gen = pr.add_argument_group("generated labels (decoder exports)")
    gen.add_argument("--gen-constraints", type=_labels, help="comma-separated labels to generate from")
    gen.add_argument("--greedy", action="store_true", help="greedy generation (default: gliner's sampling)")
    gen.add_argument("--temperature", type=float, help="sampling temperature (default 0.01, gliner's)")
    gen.add_argument("--max-new-tokens", type=int, help="tokens generated per label at most (default 15)")
    gen.add_argument("--seed", type=int, help="seed of the sampling, for reproducible output")
    r = pr.add_argument_group("runtime")
    r.add_argument(
        "--providers", default="cpu", help="cpu, cuda, or a comma-separated ONNX Runtime provider list"
    )
    r.add_argument("--batch-size", type=int, default=8, help="texts per batch when reading stdin (default 8)")
    r.add_argument("--threads", type=int, default=0, help="intra-op threads (default: ONNX Runtime's choice)")

    p.set_defaults(predict_parser=pr)

    info = sub.add_parser("info", help="print an export's manifest summary")
    info.add_argument("export_dir")

    bench = sub.add_parser(
        "bench",
        help="measure latency and throughput of an export on this machine",
        description="Batch-1 latency percentiles by text length and by label count, and throughput "
        "by batch size, on synthetic news-like text; prints a table and optionally writes JSON "
        "(with the machine, the providers actually used and the settings).",
    )
    bench.add_argument("export_dir")
    bench.add_argument("--words", type=_ints, default=[20, 60, 200], help="text lengths (default 20,60,200)")
    bench.add_argument("--labels", type=_ints, default=[5, 20, 50], help="label counts (default 5,20,50)")
    bench.add_argument("--batch-sizes", type=_ints, default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    bench.add_argument("--runs", type=int, default=20, help="timed calls per latency point (default 20)")
    bench.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    bench.add_argument("--providers", default="cpu", help="cpu, cuda, or a comma-separated provider list")
    bench.add_argument("--threads", type=int, default=0, help="intra-op threads (default: ONNX Runtime's)")
    bench.add_argument("--spinning", action="store_true", help=SPINNING_HELP)
    bench.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    add_serve_parser(sub)
    _add_annotate(sub)
    _add_hub(sub)
    return p


def _add_hub(sub: Any) -> None:
    """export_dir may be a Hub repo id (the hub extra): resolved once, before the command runs."""
    for parser in sub.choices.values():
        parser.add_argument(
            "--revision", default=None, help="Hub branch, tag or commit, when export_dir is a repo id"
        )


def _resolve_export(args: argparse.Namespace) -> None:
    from .runtime.hub import resolve_model

    args.export_dir = str(resolve_model(args.export_dir, revision=args.revision))


def _add_annotate(sub: Any) -> None:
    an = sub.add_parser(
        "annotate",
        help="annotate a JSONL / CSV / Parquet corpus with Ray Data, writing Parquet (the ray extra)",
        description="Reads --input (a file or a directory of .jsonl, .json, .csv or .parquet files), "
        "runs the export on a pool of actors (one loaded model each) and writes Parquet to --output: "
        "the input's columns plus `entities`, a list of {start, end, text, label, score} per row.",
    )
    an.add_argument("export_dir")
    an.add_argument("--input", required=True, help="input file or directory")
    an.add_argument("--output", required=True, help="output directory (new or empty)")
    an.add_argument("--labels", type=_labels, required=True, help="comma-separated entity labels")
    an.add_argument("--text-field", default="text", help="the column holding the text (default text)")
    an.add_argument("--threshold", type=_threshold, default=0.5, help="score threshold (default 0.5)")
    an.add_argument("--nested", action="store_true", help="allow nested entities (flat_ner=False)")
    an.add_argument("--multi-label", action="store_true", help="allow one span to carry several labels")
    an.add_argument("--actors", type=int, default=1, help="actors, one loaded model each (default 1)")
    an.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs (and ORT threads) per actor")
    an.add_argument("--batch-size", type=int, default=32, help="rows per model call (default 32)")
    an.add_argument("--address", default=None, help="join this Ray cluster; default: a local Ray")


def _ints(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not out or any(v < 1 for v in out):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {value!r}")
    return out


def _providers(value: str) -> str | list[str]:
    if value.lower() in ("cpu", "cuda"):
        return value.lower()
    return [v.strip() for v in value.split(",") if v.strip()]


def _records(stream: TextIO) -> Iterator[dict[str, Any]]:
    for lineno, line in enumerate(stream, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"stdin line {lineno}: invalid JSON: {e}") from e
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError(f"stdin line {lineno}: a JSON object needs a string field 'text'")
            yield obj
        else:
            yield {"text": line}


def _field_list(rec: dict[str, Any], name: str, default: list[str]) -> list[str]:
    value = rec.get(name, default)
    if isinstance(value, str):
        value = _labels(value)
    if not isinstance(value, list):
        raise ValueError(f"{name!r} must be a list or a comma-separated string, got {value!r}")
    return value


def _demo_note(manifest: Manifest, export_dir: str) -> None:
    """On stderr: a demo export's entities are not a model's (see export/demo/__init__.py)."""
    if manifest.is_demo:
        print(
            f"gliner-onnx: note: {export_dir} is the offline DEMO export ({manifest.source}), not a "
            "released GLiNER model: its entities show the pipeline working, not a real model's answers. "
            "Export a real checkpoint with gliner-export --model.",
            file=sys.stderr,
        )


def _predict(args: argparse.Namespace, out: TextIO) -> None:
    from .runtime import GLiNER, SessionOptions
    from .runtime.result import as_record

    model = GLiNER.from_pretrained(
        args.export_dir,
        providers=_providers(args.providers),
        session_options=SessionOptions(intra_op_num_threads=args.threads),
    )
    _demo_note(model.manifest, args.export_dir)
    kwargs: dict[str, Any] = {
        "threshold": args.threshold,
        "flat_ner": not args.nested,
        "multi_label": args.multi_label,
    }
    relex = model.manifest.relations_layer is not None
    extra = {"relation_threshold": args.relation_threshold, "adjacency_threshold": args.adjacency_threshold}
    if relex:
        kwargs.update(extra)
    elif args.relations is not None or any(v is not None for v in extra.values()):
        raise ValueError(
            f"--relations and the relation thresholds need a relex export; this one is {model.arch}"
        )

    def predict(texts: list[str], labels: list[str], relations: list[str] | None) -> list[dict[str, Any]]:
        rels = (relations or []) if relex else None
        found = model.extract(texts, labels, relations=rels, batch_size=args.batch_size, **kwargs)
        return [as_record(r) for r in found]

    generation = {
        "gen_constraints": args.gen_constraints,
        "do_sample": False if args.greedy else None,
        "temperature": args.temperature,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
    }
    kwargs.update({k: v for k, v in generation.items() if v is not None})
    if args.text != "-":
        (found,) = predict([args.text], args.labels, args.relations)
        out.write(json.dumps({"text": args.text, **found}, ensure_ascii=False) + "\n")
        return
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[dict[str, Any]]] = {}
        for rec in batch:
            labels = _field_list(rec, "labels", args.labels)
            relations = _field_list(rec, "relations", args.relations or [])
            groups.setdefault((tuple(labels), tuple(relations)), []).append(rec)
        results: dict[int, dict[str, Any]] = {}
        for (label_key, relation_key), recs in groups.items():
            texts = [r["text"] for r in recs]
            for rec, found in zip(recs, predict(texts, list(label_key), list(relation_key))):
                results[id(rec)] = found
        for rec in batch:
            out.write(json.dumps({**rec, **results[id(rec)]}, ensure_ascii=False) + "\n")
        out.flush()
        batch.clear()

    for rec in _records(sys.stdin):
        batch.append(rec)
        if len(batch) >= args.batch_size:
            flush()
    if batch:
        flush()


def _info(args: argparse.Namespace, out: TextIO) -> None:
    from .manifest import load_manifest

    m = load_manifest(args.export_dir)
    _demo_note(m, args.export_dir)
    out.write(f"arch: {m.arch}\nprecision: {m.precision}\nsource: {m.source}\n")
    out.write(f"model format: {m.model_format}")
    if m.ort:
        level, config = m.ort.get("optimization_level"), m.ort.get("operator_config")
        out.write(f" ({level} optimizations; reduced build: {config})")
    out.write("\n")
    if m.relations_layer is not None:
        out.write(f"relations layer: {m.relations_layer}, triples layer: {m.triples_layer}\n")
    out.write(f"max_width: {m.max_width}  max_len: {m.max_len}  splitter: {m.words_splitter}\n")
    if "span" in m.arch:
        out.write(f"span head: {m.span_head}\n")
    for name, g in m.graphs.items():
        out.write(f"graph {name}: {g.file} {list(g.inputs)} -> {list(g.outputs)}\n")
        if g.optimization:
            out.write(f"  optimization: {json.dumps(g.optimization)}\n")
    if m.decoder:
        d = m.decoder
        out.write(f"decoder: mode {d.get('mode')}, {d.get('num_layers')} layers, ")
        out.write(f"vocab {d.get('vocab_size')}\n")
    if m.agreement:
        a = m.agreement
        out.write(f"agreement with fp32: entity F1 {a['f1']:.3f} on {a['texts']} texts\n")
    q = m.quantization
    if q.get("name"):
        out.write(f"int8 recipe: {q['name']}\n")
    if q.get("speed_vs_fp32"):
        s = q["speed_vs_fp32"]
        out.write(
            f"measured at export: {s['speedup']:.2f}x the speed of fp32 "
            f"({s['fp32_ms']:.1f} -> {s['ms']:.1f} ms, batch 1, {s['threads']} threads), "
            f"{q['size_vs_fp32']:.2f}x the size\n"
        )
    out.write("versions: " + ", ".join(f"{k}={v}" for k, v in m.versions.items()) + "\n")


def _bench(args: argparse.Namespace, out: TextIO) -> None:
    from .bench import format_table, run_bench
    from .runtime import GLiNER, SessionOptions

    model = GLiNER.from_pretrained(
        args.export_dir,
        providers=_providers(args.providers),
        session_options=SessionOptions(intra_op_num_threads=args.threads, spinning=args.spinning),
    )
    result = run_bench(
        model,
        words=args.words,
        label_counts=args.labels,
        batch_sizes=args.batch_sizes,
        runs=args.runs,
        warmup=args.warmup,
        log=lambda m: print(m, file=sys.stderr),
    )
    result["threads"] = args.threads
    out.write(format_table(result) + "\n")
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, ensure_ascii=False)


def _annotate(args: argparse.Namespace) -> None:
    from .ray import annotate_files

    annotate_files(
        args.export_dir,
        args.input,
        args.output,
        args.labels,
        address=args.address,
        text_field=args.text_field,
        threshold=args.threshold,
        flat_ner=not args.nested,
        multi_label=args.multi_label,
        actors=args.actors,
        cpus_per_actor=args.cpus_per_actor,
        batch_size=args.batch_size,
        log=lambda m: print(f"gliner-onnx annotate: {m}", file=sys.stderr, flush=True),
    )


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "predict":
        # Options may come before or after the text: parse the subcommand intermixed.
        sub: argparse.ArgumentParser = parser.get_default("predict_parser")
        args = sub.parse_intermixed_args(argv[1:])
        args.command = "predict"
        return args
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if getattr(args, "batch_size", 1) < 1:
        print("gliner-onnx: error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    if getattr(args, "runs", 1) < 1 or getattr(args, "warmup", 0) < 0:
        print("gliner-onnx: error: --runs must be at least 1 and --warmup at least 0", file=sys.stderr)
        return 2
    try:
        _resolve_export(args)
        if args.command == "predict":
            _predict(args, sys.stdout)
        elif args.command == "bench":
            _bench(args, sys.stdout)
        elif args.command == "serve":
            return run_serve(args)
        elif args.command == "annotate":
            _annotate(args)
        else:
            _info(args, sys.stdout)
    except (GlinerOnnxError, ValueError, TypeError, ImportError, FileNotFoundError) as e:
        print(f"gliner-onnx: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
