"""Lower precision: int8 or fp16 copies of a validated fp32 export, and their agreement.

Each output directory holds one precision; the manifest records it, what was converted
in each graph (and, for int8, the recipe), and the entity-level F1 of the copy's
predictions against the fp32 graphs' on a fixed corpus of varied text.

int8 is `int8.py`'s recipe (`int8.DEFAULT_RECIPE` unless told), chosen by measurement
(`benchmarks/bench_int8_recipes.py`). Its calibration texts (for SmoothQuant's activation
ranges) are synthetic sentences (`demo.sentences`), never the agreement corpus.

The subpackage is the lower-precision side of the export: this module converts and measures
(`lower_precision`); `int8` holds the recipes and the weight quantization, `int8_activations`
the activation rewrites.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from gliner_onnx.manifest import GraphEntry, Manifest, load_manifest

from ..graph_io import Convert, copy_tokenizers, topological_sort, write_graph
from ..patching import replaced
from .int8 import DEFAULT_RECIPE, Int8Recipe, quantize_file

LOWER_PRECISIONS = ("int8", "fp16")
AGREEMENT_LABELS = ("person", "organization", "location", "date", "event", "product")
AGREEMENT_THRESHOLD = 0.5


def agreement_corpus() -> list[str]:
    """The fixed corpus: 114 varied lines (names, scripts, numbers, code-ish, noise) and a
    long paragraph."""
    from .. import samples

    return [*samples.corpus_lines(), samples.LONG]


def entity_f1(
    reference: Sequence[Sequence[dict[str, Any]]], predicted: Sequence[Sequence[dict[str, Any]]]
) -> dict[str, float]:
    """Entity-level precision, recall and F1: an entity matches on (text index, start, end, label)."""
    ref = {(i, e["start"], e["end"], e["label"]) for i, ents in enumerate(reference) for e in ents}
    got = {(i, e["start"], e["end"], e["label"]) for i, ents in enumerate(predicted) for e in ents}
    tp = len(ref & got)
    p = tp / len(got) if got else float(not ref)
    r = tp / len(ref) if ref else float(not got)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1}


CALIBRATION_TEXTS = 32


def calibration_feeds(export_dir: Path, texts: int = CALIBRATION_TEXTS) -> dict[str, list[dict[str, Any]]]:
    """Per graph, the inputs the runtime gives it on `texts` synthetic sentences (held-out
    seeds of `demo.sentences`, their labels): what SmoothQuant measures activations on."""
    from gliner_onnx import GLiNER

    from ..demo.sentences import LABELS, heldout

    model = GLiNER.from_pretrained(export_dir)
    runner = model.context.runner
    feeds: dict[str, list[dict[str, Any]]] = {}
    for name in model.context.manifest.graphs:
        session = runner.session(name)
        run = session.run

        def recording(inputs: Any, *, _name: str = name, _run: Any = run) -> Any:
            feeds.setdefault(_name, []).append({k: np.array(v) for k, v in inputs.items()})
            return _run(inputs)

        session.run = recording  # type: ignore[method-assign]
    for example in heldout(texts + 1000)[1000:]:  # seeds apart from the agreement's held-out
        text = " ".join(example["tokenized_text"])
        model.extract([text], list(LABELS), threshold=0.5, return_relations=False)
    return feeds


def _int8(
    path: Path, recipe: Int8Recipe, feeds: list[dict[str, Any]]
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    proto, info = quantize_file(path, recipe, feeds)
    if info["precision"] == "int8":
        info["recipe"] = recipe.name
    return proto, info


def _fp16(path: Path) -> tuple[onnx.ModelProto, dict[str, Any], dict[str, Convert]]:
    """onnxruntime's fp16 conversion of the graph at `path`, its weights left in their data file:
    the graph converted without them (the converter only retypes a weight it has no bytes of),
    and, for each weight it made float16, the conversion of its bytes, elementwise and so done
    block by block when `write_graph` copies the weights (`source`). Converting the loaded graph
    held the weights, the converter's float32 temporaries and their float16 copies at once."""
    from onnx.external_data_helper import uses_external_data
    from onnxruntime.transformers import float16

    proto = onnx.load(str(path), load_external_data=False)
    weights = proto.graph.initializer
    external = {t.name for t in weights if uses_external_data(t) and t.data_type == onnx.TensorProto.FLOAT}
    with _shapes_from_dims(float16):
        proto = float16.convert_float_to_float16(proto, keep_io_types=True)
    fp16 = onnx.TensorProto.FLOAT16
    halved = [t.name for t in proto.graph.initializer if t.name in external and t.data_type == fp16]

    def to_half(block: bytes) -> bytes:
        return bytes(float16.convert_np_to_float16(np.frombuffer(block, dtype=np.float32)).data)

    return proto, {"precision": "fp16", "io": "float32"}, dict.fromkeys(halved, to_half)


@contextlib.contextmanager
def _shapes_from_dims(float16: Any) -> Iterator[None]:
    """Within: the fp16 converter types a converted weight from its dims, not from its bytes
    (`numpy_helper.to_array`, which would read a weight left in its data file). The same value
    info for a weight whose bytes are loaded."""

    def from_dims(tensor: onnx.TensorProto) -> onnx.ValueInfoProto:
        return onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))

    with replaced(float16, "make_value_info_from_tensor", from_dims):
        yield


def lower_precision(
    fp32_dir: Path,
    out_dir: Path,
    precision: str,
    log: Callable[[str], None] = print,
    recipe: Int8Recipe = DEFAULT_RECIPE,
) -> Manifest:
    """Write an `precision` copy of the fp32 export `fp32_dir` into the empty `out_dir`
    (int8: by `recipe`)."""
    if precision not in LOWER_PRECISIONS:
        raise ValueError(f"precision must be one of {LOWER_PRECISIONS}, got {precision!r}")
    manifest = load_manifest(fp32_dir)
    if manifest.precision != "fp32":
        raise ValueError(f"{fp32_dir} holds {manifest.precision} graphs, not fp32")
    feeds: dict[str, list[dict[str, Any]]] = {}
    if precision == "int8" and (recipe.smooth is not None or recipe.outliers is not None):
        log("recording calibration inputs on synthetic sentences ...")
        feeds = calibration_feeds(fp32_dir)
    copy_tokenizers(manifest, fp32_dir, out_dir)
    graphs: dict[str, GraphEntry] = {}
    for name, g in manifest.graphs.items():
        log(f"converting {name} to {precision} ...")
        source: Path | None = None  # int8: the quantized graph holds its weights
        convert: dict[str, Convert] = {}
        if precision == "int8":
            proto, info = _int8(fp32_dir / g.file, recipe, feeds.get(name, []))
        else:  # fp16: the weights are converted as they are copied from the fp32 data file
            proto, info, convert = _fp16(fp32_dir / g.file)
            source = fp32_dir
        topological_sort(proto.graph)
        entry = write_graph(proto, out_dir, name, g.inputs, g.outputs, source=source, convert=convert)
        graphs[name] = replace(entry, optimization={**g.optimization, **info})
    lowered = replace(manifest, graphs=graphs, precision=precision)
    if precision == "int8":
        lowered = replace(lowered, quantization=recipe.record())
    lowered.save(out_dir)
    log(f"measuring {precision} agreement with fp32 ...")
    agreement = measure_agreement(fp32_dir, out_dir)
    log(f"entity F1 of {precision} against fp32: {agreement['f1']:.3f} on {agreement['texts']} texts")
    speed = measure_speed(fp32_dir, out_dir)
    size = dir_bytes(out_dir) / dir_bytes(fp32_dir)
    log(
        f"{precision} against fp32: {speed['speedup']:.2f}x the speed ({speed['fp32_ms']:.1f} -> "
        f"{speed['ms']:.1f} ms, batch 1, {speed['threads']} threads), {size:.2f}x the size"
    )
    quantization = {**lowered.quantization, "speed_vs_fp32": speed, "size_vs_fp32": round(size, 4)}
    lowered = replace(lowered, agreement=agreement, quantization=quantization)
    lowered.save(out_dir)
    return lowered


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def measure_speed(
    fp32_dir: Path, other_dir: Path, rounds: int = 5, runs: int = 10, threads: int = 2
) -> dict[str, Any]:
    """Batch-1 latency of `other_dir` against `fp32_dir` (the first ~60 words of the corpus's long
    paragraph, 5 labels): both loaded, `rounds` alternating rounds of `runs` calls after a warm-up,
    the medians of each round's median. On the machine that exports: a hint, not a benchmark
    (benchmarks/bench_int8_recipes.py is that)."""
    import statistics
    import time

    from gliner_onnx import GLiNER, SessionOptions

    from ..samples import LONG

    text = " ".join(LONG.split()[:60])
    labels = list(AGREEMENT_LABELS[:5])
    options = SessionOptions(intra_op_num_threads=threads)
    models = [
        GLiNER.from_pretrained(fp32_dir, session_options=options),
        GLiNER.from_pretrained(other_dir, session_options=options, verify=False),
    ]
    medians: list[list[float]] = [[], []]
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            for _ in range(3):
                models[i].extract([text], labels)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                models[i].extract([text], labels)
                times.append(time.perf_counter() - t0)
            medians[i].append(statistics.median(times) * 1000)
    fp32_ms, ms = statistics.median(medians[0]), statistics.median(medians[1])
    return {
        "fp32_ms": round(fp32_ms, 3),
        "ms": round(ms, 3),
        "speedup": round(fp32_ms / ms, 3),
        "threads": threads,
    }


def measure_agreement(fp32_dir: Path, other_dir: Path) -> dict[str, Any]:
    """Entity-level agreement of `other_dir`'s predictions with `fp32_dir`'s on the corpus."""
    from gliner_onnx import GLiNER

    texts = agreement_corpus()
    labels = list(AGREEMENT_LABELS)
    # Entities only (relex exports: relation scoring skipped).
    kw = {"threshold": AGREEMENT_THRESHOLD, "batch_size": 8, "return_relations": False}
    ref = [r.entities for r in GLiNER.from_pretrained(fp32_dir).extract(texts, labels, **kw)]
    got = [r.entities for r in GLiNER.from_pretrained(other_dir, verify=False).extract(texts, labels, **kw)]
    return {
        "metric": "entity F1 against the fp32 graphs (text, start, end, label)",
        **entity_f1(ref, got),
        "texts": len(texts),
        "labels": labels,
        "threshold": AGREEMENT_THRESHOLD,
        "fp32_entities": sum(map(len, ref)),
        "entities": sum(map(len, got)),
    }
