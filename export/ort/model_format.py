"""ORT format exports (`gliner-export --format ort`): ONNX Runtime's own model format, for its
mobile packages and reduced-size builds, and the operator config such a build is made with.

A validated ONNX export (any precision) is converted graph by graph with ONNX Runtime's own
conversion, as `onnxruntime.tools.convert_onnx_models_to_ort` does it: the graph is loaded in
a CPU session whose optimized model is saved in ORT format. The operator config
(`required_operators.config`, for `build.sh --minimal_build --include_ops_by_config`) is
written from the converted files by the tool's `create_config_from_models`. The ORT export's
answers are then checked against the ONNX export's on a few texts: the same entities (and
relations), scores within 1e-4; a difference is an error.

Optimization level: **all, without the NCHWc layout transformer**: the conversion tool's own
default (it drops NCHWc unless told the target is x86-64); and without the fusions the runtime's
CPU sessions leave out (`runtime/options.py`'s `CPU_DISABLED_OPTIMIZERS`: SkipLayerNormalization),
so that an ORT file answers exactly as its ONNX export does. ONNX Runtime optimizes an ONNX graph
when it loads it (the runtime's default level is "all") but applies none of its ONNX-level
optimizations to an ORT format model (runtime/session.py): the ORT file must carry them to
answer as the ONNX export does. Measured on the MiniLM span demo (the export's check texts,
`benchmarks/results/ort_format.json`, `check_vs_onnx`): converted at basic, the int8 export's
answers differ from the ONNX export's (the fused int8 kernels, DynamicQuantizeMatMul and
MatMulIntegerToFloat, do not compute exactly what the unfused MatMulInteger graph does, which
would also void the int8 agreement the manifest records); at extended, the fp16 export's scores
still differ (the "all" level removes Cast pairs that ONNX Runtime inserts around operators it
lacks in fp16 on CPU); at this level, none does. NCHWc is left out because it is the one
rewrite that is specific to the converting CPU (x86's AVX blocked layouts: ONNX Runtime warns
that such a model "may contain hardware specific optimizations"); our graphs have no
convolutions for it anyway. The fusions are contrib operators of the CPU execution provider
(FusedMatMul, BiasGelu, the int8 ones), in every CPU build with contrib
ops, x86-64 and ARM64 alike: a reduced build must keep contrib ops (the operator config lists
them under com.microsoft), and with a mobile provider (NNAPI, CoreML) those nodes run on the CPU
provider. Graphs are converted for the CPU provider (docs/edge.md).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gliner_onnx.errors import ExportError
from gliner_onnx.manifest import MODEL_FORMATS, GraphEntry, Manifest, load_manifest, sha256_file
from gliner_onnx.runtime.options import CPU_DISABLED_OPTIMIZERS

from .. import samples
from ..graph_io import copy_tokenizers

ORT_OPTIMIZATION = "all"
# The conversion tool's filter for targets other than x86-64: NCHWc is AVX-specific; and what
# the runtime's CPU sessions leave out (`runtime/session.py`: SkipLayerNormalization's CPU kernel
# is slower than the operators it fuses).
DISABLED_OPTIMIZERS = ("NchwcTransformer", *CPU_DISABLED_OPTIMIZERS)
OPERATOR_CONFIG = "required_operators.config"
# The check of the ORT export against the ONNX one: a few varied texts, a low threshold so
# that many spans are compared, gliner's score tolerance.
CHECK_TEXTS = 8
CHECK_LABELS = ("person", "organization", "location", "date", "event", "product")
CHECK_THRESHOLD = 0.3
CHECK_ATOL = 1e-4
# An ORT format file is one flatbuffer, weights inside, and flatbuffers address it with signed
# 32-bit offsets: nothing of 2 GiB or more can be written (ONNX Runtime fails deep in the
# conversion). An ONNX graph keeps its weights in an external data file and has no such limit.
ORT_FORMAT_LIMIT = 2**31 - 1
# The least a weight can take in a graph of each precision (int8: one byte, scales aside).
_MIN_WEIGHT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


def check_model_format(model_format: str) -> None:
    if model_format not in MODEL_FORMATS:
        raise ValueError(f"model_format must be one of {', '.join(MODEL_FORMATS)}; got {model_format!r}")


def _too_large(what: str, size: int) -> ExportError:
    return ExportError(
        f"--format ort cannot hold {what}: {size / 2**30:.2f} GiB, and an ORT format file (one "
        f"flatbuffer, weights inside) must stay under 2 GiB; export ONNX (the default format, which "
        f"keeps the weights in an external data file), or a lower precision (--quantize int8)"
    )


def check_ort_fits(model: Any, precision: str, model_format: str) -> None:
    """Before any tracing: refuse an ORT format export whose largest backbone alone (each one
    goes whole into one graph) cannot fit in an ORT format file at `precision`."""
    if model_format != "ort":
        return
    from transformers import PreTrainedModel

    biggest, name = 0, ""
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            size = sum(p.numel() for p in module.parameters()) * _MIN_WEIGHT_BYTES.get(precision, 1)
            if size > biggest:
                biggest, name = size, type(module).__name__
    if biggest > ORT_FORMAT_LIMIT:
        raise _too_large(f"the {name} backbone's {precision} weights", biggest)


def check_graph_fits(onnx_file: Path, data_file: Path | None) -> None:
    """Refuse to convert a graph whose file and weights reach the ORT format's limit."""
    size = onnx_file.stat().st_size + (data_file.stat().st_size if data_file is not None else 0)
    if size > ORT_FORMAT_LIMIT:
        raise _too_large(f"graph {onnx_file.name}", size)


def convert_graph(onnx_file: Path, ort_file: Path, level: str = ORT_OPTIMIZATION) -> None:
    """Write `onnx_file` (its external data beside it) as the ORT format file `ort_file`,
    with `level` optimizations ("all" but NCHWc; "basic" and "extended" for comparison), as
    `convert_onnx_models_to_ort` does."""
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[level]
    so.optimized_model_filepath = str(ort_file)
    so.add_session_config_entry("session.save_model_format", "ORT")
    # The tool's setting without a target platform: int8 QDQ pairs are not kept as int8 for
    # ARM's kernels (an exact rewrite either way).
    so.add_session_config_entry("session.qdqisint8allowed", "0")
    so.log_severity_level = 3
    try:
        ort.InferenceSession(
            str(onnx_file),
            sess_options=so,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(DISABLED_OPTIMIZERS) if level == "all" else None,
        )
    except Exception as e:  # ORT's own exception types
        raise ExportError(f"ONNX Runtime cannot convert {onnx_file.name} to ORT format: {e}") from e
    if not ort_file.is_file():
        raise ExportError(f"ONNX Runtime wrote no ORT format file for {onnx_file.name}")


def write_operator_config(ort_files: Sequence[Path], directory: Path) -> Path:
    """`required_operators.config` in `directory`: the operators (per domain and opset) the
    ORT format files use, as ONNX Runtime's tooling writes it, naming the files relatively."""
    from onnxruntime.tools.ort_format_model import create_config_from_models

    # its module logs every config it writes at INFO; the export's own log says it
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    path = directory / OPERATOR_CONFIG
    create_config_from_models(list(ort_files), path, False)
    names = {str(f): f.name for f in ort_files}
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text(
        "\n".join(f"# - {names.get(ln[4:], ln[4:])}" if ln.startswith("# - ") else ln for ln in lines) + "\n",
        encoding="utf-8",
    )
    return path


def read_operator_config(path: Path) -> dict[str, set[str]]:
    """The operator types per domain a config file requires (ONNX Runtime's parser)."""
    from onnxruntime.tools.reduced_build_config_parser import parse_config

    required, _ = parse_config(str(path))
    return {domain: set().union(*opsets.values()) for domain, opsets in (required or {}).items()}


def to_ort_format(onnx_dir: Path, out_dir: Path, log: Callable[[str], None] = print) -> Manifest:
    """Write the ORT format copy of the validated export `onnx_dir` into the empty `out_dir`,
    with its operator config; check its answers against `onnx_dir`'s."""
    import onnxruntime as ort

    manifest = load_manifest(onnx_dir)
    copy_tokenizers(manifest, onnx_dir, out_dir)
    for g in manifest.graphs.values():  # all checked before any is converted
        check_graph_fits(onnx_dir / g.file, onnx_dir / g.data_file if g.data_file else None)
    graphs: dict[str, GraphEntry] = {}
    for name, g in manifest.graphs.items():
        log(f"converting {name} to ORT format ...")
        file = f"{name}.ort"
        convert_graph(onnx_dir / g.file, out_dir / file)
        digest = sha256_file(out_dir / file)  # weights inside: no data file
        graphs[name] = replace(
            g, file=file, sha256=digest, data_file=None, data_sha256=None, model_format="ort"
        )
    config = write_operator_config([out_dir / g.file for g in graphs.values()], out_dir)
    info: dict[str, Any] = {
        "optimization_level": ORT_OPTIMIZATION,
        "disabled_optimizers": list(DISABLED_OPTIMIZERS),
        "converted_with": f"onnxruntime {ort.__version__}",
        "operator_config": config.name,
        "operator_config_sha256": sha256_file(config),
        "operators": sum(map(len, read_operator_config(config).values())),
    }
    converted = replace(manifest, graphs=graphs, model_format="ort", ort=info)
    converted.save(out_dir)
    log("checking the ORT format graphs' answers against the ONNX graphs' ...")
    check = compare_answers(onnx_dir, out_dir)
    converted = replace(converted, ort={**info, "check": check})
    converted.save(out_dir)
    return converted


def ort_stage(onnx_dir: Path, log: Callable[[str], None]) -> tuple[Path, Manifest]:
    """`to_ort_format` into a new temporary sibling of `onnx_dir`, which is removed; on failure
    the new directory is removed too. Returns the new directory and its manifest."""
    out = Path(tempfile.mkdtemp(prefix=f"{onnx_dir.name}-ort-", dir=onnx_dir.parent))
    try:
        return out, to_ort_format(onnx_dir, out, log)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(onnx_dir, ignore_errors=True)


def _max_diff(a: Any, b: Any) -> float:
    """The largest |difference| between the floats of two equal-shaped answers; inf where
    anything else (an entity, a label, an offset) differs."""
    if isinstance(a, (float, np.floating)) and isinstance(b, (float, np.floating)):
        return abs(float(a) - float(b))
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return math.inf
        return max((_max_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return math.inf
        return max((_max_diff(x, y) for x, y in zip(a, b)), default=0.0)
    return 0.0 if a == b else math.inf


def compare_answers(onnx_dir: Path, ort_dir: Path) -> dict[str, Any]:
    """The runtime's answers from both exports on the check texts: they must be the same
    entities (and relations) with scores within `CHECK_ATOL`, else `ExportError`."""
    from gliner_onnx import GLiNER

    texts = [samples.SHORT, samples.MEDIUM, samples.LONG, *samples.corpus_lines()][:CHECK_TEXTS]
    labels = list(CHECK_LABELS)
    kw: dict[str, Any] = {"threshold": CHECK_THRESHOLD, "batch_size": 4}
    manifest = load_manifest(onnx_dir, verify=False)
    if manifest.relations_layer is not None:
        kw["relations"] = list(samples.relations_for(labels))
    if manifest.decoder:  # the label decoder samples by default: greedy, to compare
        kw["do_sample"] = False
    ref = GLiNER.from_pretrained(onnx_dir).extract(texts, labels, **kw)
    got = GLiNER.from_pretrained(ort_dir).extract(texts, labels, **kw)
    diff = _max_diff([(r.entities, r.relations) for r in ref], [(r.entities, r.relations) for r in got])
    if diff > CHECK_ATOL:
        what = "different entities or relations" if math.isinf(diff) else f"scores differing by {diff:.2e}"
        raise ExportError(
            f"the ORT format graphs answer differently from the ONNX graphs ({what}, tolerance "
            f"{CHECK_ATOL:g}) on {len(texts)} texts"
        )
    return {
        "texts": len(texts),
        "labels": labels,
        "threshold": CHECK_THRESHOLD,
        "entities": sum(len(r.entities) for r in ref),
        "relations": sum(len(r.relations or []) for r in ref),
        "max_abs_score_diff": diff,
    }


def ort_line(ort_info: dict[str, Any]) -> str:
    """The export report's line on an ORT format export."""
    c = ort_info.get("check", {})
    level, config, ops = (ort_info.get(k) for k in ("optimization_level", "operator_config", "operators"))
    disabled = ort_info.get("disabled_optimizers") or []
    how = f"{level} optimizations" + (f" without {', '.join(disabled)}" if disabled else "")
    return (
        f"  ORT format ({how}) vs ONNX: same answers on {c.get('texts')} texts "
        f"({c.get('entities')} entities, {c.get('relations')} relations), max |score diff| "
        f"{c.get('max_abs_score_diff', math.nan):.2e}; reduced build: {config} ({ops} operators)"
    )
