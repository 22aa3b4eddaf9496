"""spaCy and Presidio: our component / recognizer against gliner-spacy / Presidio's GLiNERRecognizer.

    python benchmarks/bench_integrations.py                 # builds and exports the demo MiniLM span
    python benchmarks/bench_integrations.py --checkpoint CKPT --export EXPORT --rounds 7

Same checkpoint for every engine: the offline demo `uniencoder_span` (all-MiniLM-L6-v2, untrained
heads, fixed seed) saved with `save_pretrained`, and our export of it. One-sentence news-like texts
(12-20 words), 5 labels, threshold 0.5.

spaCy, `spacy.blank("en")` plus one component, docs per second over `--docs` texts:
  gliner-onnx pipe   nlp.pipe(texts): our component, one runtime call per nlp.pipe batch
  gliner-onnx call   [nlp(t) for t in texts]: one runtime call per doc (no batching)
  gliner-spacy       nlp.pipe(texts): gliner-spacy 0.0.11 (`gliner_spacy` factory, gliner torch;
                     it has no `pipe`, so one predict_entities call per doc). As installed it
                     finds no entity with gliner 0.2.29 (it loads with load_tokenizer=False: the
                     backbone's tokenizer, without the checkpoint's added tokens); that is
                     recorded, then its `model` is replaced by GLiNER.from_pretrained(CHECKPOINT)
                     and timed (same forward per doc, the checkpoint's answers)
Presidio, an AnalyzerEngine whose NLP engine is a blank spaCy pipeline saved to disk and whose
registry holds only the recognizer, `analyze(text, language="en")` per text (texts/s):
  gliner-onnx        GlinerOnnxRecognizer(model=EXPORT)
  presidio gliner    Presidio's GLiNERRecognizer(model_name=CHECKPOINT) (gliner torch)
  gliner-onnx batch  GlinerOnnxRecognizer.analyze_batch(texts) (outside the AnalyzerEngine)
both with the same entity mapping (the labels below) and threshold.

Threads: `--threads` for torch and ONNX Runtime alike (default 1: OpenMP threads collapse when
other processes take the cores; 0 keeps both libraries' defaults). Engines alternate in `--rounds`
rounds (order reversed every other round) after a warm-up; medians and all rounds are recorded with
the share of the CPUs other processes used during each measurement (the machine may be shared:
compare the ratios). Agreement: (start, end, label) of every entity, ours against theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).parent))

from bench_serve import LABELS, _machine_busy, sentences  # noqa: E402

HERE = Path(__file__).parent
# LABELS (bench_serve's) -> Presidio entities; "event" has no predefined Presidio entity.
MAPPING = dict(zip(LABELS, ["PERSON", "ORGANIZATION", "LOCATION", "DATE_TIME", "EVENT"]))
THRESHOLD = 0.5


def _machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    flags = Path("/proc/cpuinfo").read_text()
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "avx512_vnni": "avx512_vnni" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "loadavg_start": os.getloadavg(),
    }


def _timed(fn: Callable[[], Any], n: int) -> dict[str, float]:
    """Run fn once; items/s and the share of the machine's CPUs other processes used meanwhile."""
    busy0, own0, t0 = _machine_busy(), time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    busy, own = _machine_busy() - busy0, time.process_time() - own0
    others = max(0.0, busy - own) / (wall * (os.cpu_count() or 1))
    return {"per_s": n / wall, "wall_s": wall, "others_cpu_share": others}


def _rounds(engines: dict[str, Callable[[], Any]], n: int, rounds: int) -> dict[str, Any]:
    for fn in engines.values():  # warm-up
        fn()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
    names = list(engines)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            runs[name].append(_timed(engines[name], n))
            print(f"  round {r}: {name}: {runs[name][-1]['per_s']:.1f}/s", file=sys.stderr)
    return {
        name: {
            "median_per_s": statistics.median(x["per_s"] for x in rs),
            "others_cpu_share_median": statistics.median(x["others_cpu_share"] for x in rs),
            "rounds": rs,
        }
        for name, rs in runs.items()
    }


Found = list[set[tuple[int, int, str]]]


def _agreement(ours: Found, theirs: Found) -> dict[str, Any]:
    tp = sum(len(a & b) for a, b in zip(ours, theirs))
    n_ours, n_theirs = sum(map(len, ours)), sum(map(len, theirs))
    f1 = 2 * tp / (n_ours + n_theirs) if n_ours + n_theirs else 1.0
    return {"entities_ours": n_ours, "entities_theirs": n_theirs, "f1": f1, "identical": ours == theirs}


def bench_spacy(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    import spacy

    import gliner_onnx.spacy_component  # noqa: F401  (registers the factory, as the entry point does)

    ours = spacy.blank("en")
    ours.add_pipe(
        "gliner_onnx",
        config={
            "model": args.export,
            "labels": LABELS,
            "threshold": THRESHOLD,
            "batch_size": args.batch_size,
            "threads": args.threads,
        },
    )
    theirs = spacy.blank("en")
    theirs.add_pipe(
        "gliner_spacy",
        config={
            "gliner_model": args.checkpoint,
            "labels": LABELS,
            "threshold": THRESHOLD,
            "style": "ent",
            "chunk_size": 250,
            "map_location": "cpu",
        },
    )
    record: dict[str, Any] = {
        "nlp_pipe_batch_size": args.pipe_batch_size,
        "component_batch_size": args.batch_size,
    }
    ents = lambda docs: [{(e.start_char, e.end_char, e.label_) for e in d.ents} for d in docs]  # noqa: E731
    # gliner-spacy 0.0.11 loads with load_tokenizer=False (its load_onnx_model): gliner 0.2.29 then
    # builds the tokenizer from the backbone's name, without the checkpoint's added <<ENT>> /
    # <<SEP>> tokens, and finds no entity. Recorded, then timed with the model gliner loads by
    # default (same graph, same cost per doc, the checkpoint's answers).
    component = theirs.get_pipe("gliner_spacy")
    record["gliner_spacy_as_installed"] = {
        "agreement": _agreement(ents(ours.pipe(texts)), ents(theirs.pipe(texts))),
        "tokenizer_entries": len(component.model.data_processor.transformer_tokenizer),
    }
    from gliner import GLiNER

    component.model = GLiNER.from_pretrained(args.checkpoint, map_location="cpu")
    record["gliner_spacy_tokenizer_entries_fixed"] = len(component.model.data_processor.transformer_tokenizer)
    record["agreement"] = _agreement(ents(ours.pipe(texts)), ents(theirs.pipe(texts)))
    engines = {
        "gliner-onnx pipe": lambda: list(ours.pipe(texts, batch_size=args.pipe_batch_size)),
        "gliner-onnx call": lambda: [ours(t) for t in texts],
        "gliner-spacy": lambda: list(theirs.pipe(texts, batch_size=args.pipe_batch_size)),
    }
    record["docs_per_s"] = _rounds(engines, len(texts), args.rounds)
    base = record["docs_per_s"]["gliner-spacy"]["median_per_s"]
    record["ratio_vs_gliner_spacy"] = {
        k: v["median_per_s"] / base for k, v in record["docs_per_s"].items() if k != "gliner-spacy"
    }
    return record


def bench_presidio(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import GLiNERRecognizer

    from gliner_onnx.presidio import GlinerOnnxRecognizer

    blank = Path(tempfile.mkdtemp(prefix="bench-integ-blank-")) / "en"
    spacy.blank("en").to_disk(blank)
    conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": str(blank)}]}

    def engine(recognizer: Any) -> AnalyzerEngine:
        nlp_engine = NlpEngineProvider(nlp_configuration=conf).create_engine()
        return AnalyzerEngine(nlp_engine=nlp_engine, registry=RecognizerRegistry(recognizers=[recognizer]))

    ours_rec = GlinerOnnxRecognizer(
        model=args.export, entity_mapping=MAPPING, threshold=THRESHOLD, threads=args.threads
    )
    theirs_rec = GLiNERRecognizer(
        model_name=args.checkpoint, entity_mapping=MAPPING, threshold=THRESHOLD, map_location="cpu"
    )
    ours, theirs = engine(ours_rec), engine(theirs_rec)
    spans = lambda results: [{(r.start, r.end, r.entity_type) for r in rs} for rs in results]  # noqa: E731
    record: dict[str, Any] = {
        "agreement": _agreement(
            spans([ours.analyze(t, language="en") for t in texts]),
            spans([theirs.analyze(t, language="en") for t in texts]),
        )
    }
    entities = sorted(set(MAPPING.values()))
    engines = {
        "gliner-onnx": lambda: [ours.analyze(t, language="en") for t in texts],
        "gliner-onnx batch": lambda: ours_rec.analyze_batch(texts, entities),
        "presidio gliner": lambda: [theirs.analyze(t, language="en") for t in texts],
    }
    record["texts_per_s"] = _rounds(engines, len(texts), args.rounds)
    base = record["texts_per_s"]["presidio gliner"]["median_per_s"]
    record["ratio_vs_presidio_gliner"] = {
        k: v["median_per_s"] / base for k, v in record["texts_per_s"].items() if k != "presidio gliner"
    }
    return record


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="gliner checkpoint directory (default: build the demo)")
    p.add_argument("--export", help="our export of --checkpoint (default: export it)")
    p.add_argument("--docs", type=int, default=64, help="texts per measurement")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8, help="our component's runtime batch size")
    p.add_argument("--pipe-batch-size", type=int, default=64, help="nlp.pipe(batch_size=)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads and ONNX Runtime intra-op threads (0: defaults)"
    )
    p.add_argument("--skip-presidio", action="store_true")
    p.add_argument("--out", default=str(HERE / "results" / "integrations.json"))
    args = p.parse_args()

    import spacy
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint is None:
        from gliner_onnx.export.demo import build_demo

        args.checkpoint = tempfile.mkdtemp(prefix="bench-integ-ckpt-")
        build_demo("uniencoder_span").save_pretrained(args.checkpoint)
    if args.export is None:
        from gliner_onnx.export import export_model

        args.export = str(Path(tempfile.mkdtemp(prefix="bench-integ-onnx-")) / "export")
        export_model(args.checkpoint, args.export, log=lambda _m: None)

    import onnxruntime
    import presidio_analyzer

    git = ["git", "-C", str(HERE), "describe", "--always", "--dirty"]
    versions = {
        "python": sys.version.split()[0],
        "spacy": spacy.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "presidio_analyzer": getattr(presidio_analyzer, "__version__", "?"),
    }
    from importlib.metadata import version

    for dist in ("gliner", "gliner-spacy", "presidio-analyzer", "presidio-anonymizer"):
        versions[dist] = version(dist)
    texts = sentences(args.docs, seed=1)
    record: dict[str, Any] = {
        "checkpoint": "demo: all-MiniLM-L6-v2 backbone, untrained span heads (uniencoder_span)",
        "labels": LABELS,
        "threshold": THRESHOLD,
        "texts": f"{args.docs} one-sentence texts, 12-20 words",
        "threads": {
            "torch": torch.get_num_threads(),
            "onnxruntime": args.threads or "default (one per core)",
        },
        "machine": _machine(),
        "versions": versions,
        "commit": subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip(),
        "command": "python " + " ".join(sys.argv),
    }
    print("spaCy", file=sys.stderr)
    record["spacy"] = bench_spacy(args, texts)
    if not args.skip_presidio:
        print("Presidio", file=sys.stderr)
        record["presidio"] = bench_presidio(args, texts)
    record["machine"]["loadavg_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("spacy", "presidio") if k in record}, indent=1)[:3000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
