"""`export_model`: trace a GLiNER checkpoint into separate ONNX graphs, validate, write atomically.

What differs per architecture is its export config (`configs.py`); the steps here are
the same for all: write and check the tokenizers, trace (`tracing.py`), validate
(`validation.py`), export what the config adds (the label decoder), write the manifest.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from gliner_onnx.archs import check_arch, get_arch
from gliner_onnx.errors import ExportError, ParityError
from gliner_onnx.manifest import MANIFEST_NAME
from gliner_onnx.runtime.words import check_splitter

from .configs import ExportConfig, export_config
from .context import ExportContext
from .detect import detect_arch, read_config
from .memory import large_blocks_mapped, load_assigned, release_model, trim, weights_from_files
from .model_card import write_model_card
from .ort.model_format import check_model_format, check_ort_fits, ort_line, ort_stage
from .precision import LOWER_PRECISIONS, lower_precision
from .precision.int8 import NAMED_RECIPES
from .quiet import quiet_loading
from .tracing import trace
from .validation import parity_line, validate

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4


@dataclass
class ExportReport:
    output: Path
    arch: str
    max_abs_diff: dict[str, dict[str, float]] = field(default_factory=dict)
    span_head: str = "generic"
    optimized: bool = False
    precision: str = "fp32"
    agreement: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    parity: str = ""  # one line: what validation checked
    model_format: str = "onnx"
    ort: dict[str, Any] = field(default_factory=dict)  # ORT format exports: the manifest's `ort`

    def lines(self) -> list[str]:
        how = ("optimized" if self.optimized else "plain") + f" {self.precision}"
        if get_arch(self.arch).family == "span":
            how += f", {self.span_head} span head"
        how += ", ORT format" if self.model_format == "ort" else ""
        out = [f"exported {self.arch} ({how} graphs) to {self.output}"]
        for graph, diffs in self.max_abs_diff.items():
            shown = ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
            out.append(f"  fp32 {graph}: max abs diff vs torch: {shown}")
        if self.parity:
            out.append(self.parity)
        if self.agreement:
            a = self.agreement
            out.append(
                f"  {self.precision} vs fp32: entity F1 {a['f1']:.3f} (precision {a['precision']:.3f}, "
                f"recall {a['recall']:.3f}) on {a['texts']} texts"
            )
        if self.quantization.get("speed_vs_fp32"):
            out.append("  " + speed_and_size(self.precision, self.quantization))
        if self.ort:
            out.append(ort_line(self.ort))
        return out


def speed_and_size(precision: str, q: dict[str, Any]) -> str:
    """One line: the lower precision's speed and size against fp32, as measured at export."""
    s = q["speed_vs_fp32"]
    line = (
        f"{precision} vs fp32: {s['speedup']:.2f}x the speed ({s['fp32_ms']:.1f} -> {s['ms']:.1f} ms, "
        f"batch 1, {s['threads']} threads, this machine), {q['size_vs_fp32']:.2f}x the size"
    )
    return line + (f"; recipe: {q['name']}" if q.get("name") else "")


def load_gliner(model: str | Path) -> Any:
    """Load a checkpoint (a local directory or a hub id) with gliner itself."""
    from gliner import GLiNER

    local = Path(model).is_dir()
    if not local and (str(model).startswith((".", "/", "~")) or Path(model).exists()):
        raise ExportError(f"model {model}: no such directory")
    try:
        with quiet_loading():
            loaded = load_assigned(partial(GLiNER.from_pretrained, str(model), local_files_only=local))
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"cannot load GLiNER model {model!r}: {type(e).__name__}: {e}") from e
    loaded.eval()
    return loaded


def _check_supported(model: Any, arch: str) -> None:
    cfg = model.config
    try:
        check_splitter(getattr(cfg, "words_splitter_type", "whitespace"))
    except ValueError as e:
        raise ExportError(str(e)) from None
    if getattr(cfg, "precomputed_prompts_mode", False):
        raise ExportError("precomputed_prompts_mode checkpoints are not supported")
    export_config(arch).check(model)


def export_model(
    model: str | Path | Any,
    output: str | Path,
    *,
    arch: str | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    overwrite: bool = False,
    optimize: bool = True,
    fuse: bool = False,
    precision: str = "fp32",
    source: str | None = None,
    log: Callable[[str], None] = print,
    model_format: str = "onnx",
    int8_recipe: str = "default",
) -> ExportReport:
    """Export a GLiNER model (a loaded `gliner.GLiNER`, a local directory or a hub id).

    `arch`, when given, must match the checkpoint's architecture. The export is
    validated against torch and written atomically: on any failure nothing
    loadable is left at `output`. `optimize` rewrites the graphs for speed where
    parity holds (the factorized span head for markerV0 span models, the factorized
    token scorer), falling back to the plain graphs otherwise. `precision` "int8" or
    "fp16" converts the validated fp32 graphs and records their agreement with fp32.
    `fuse` (with `optimize`) runs ONNX Runtime's transformer optimizer on the encoders.
    `int8_recipe` names the int8 recipe (`precision.int8.NAMED_RECIPES`). `model_format` "ort" converts
    the final graphs to ONNX Runtime's ORT format and writes the
    operator config of a reduced build (`ort/model_format.py`).
    """
    output = Path(output)
    _check_arguments(output, arch, atol, precision, overwrite)
    check_model_format(model_format)
    if int8_recipe not in NAMED_RECIPES:
        raise ValueError(f"int8_recipe must be one of {', '.join(NAMED_RECIPES)}, got {int8_recipe!r}")
    owned = isinstance(model, (str, Path))  # loaded here: freed once the graphs are validated
    if isinstance(model, (str, Path)):
        source = source or str(model)
        if Path(model).is_dir():  # fail fast, before loading any weights
            _check_detected(detect_arch(read_config(model)), arch)
        log(f"loading {model} ...")
        model = load_gliner(model)
    detected = detect_arch(model.config)
    _check_detected(detected, arch)
    _check_supported(model, detected)
    config = export_config(detected)
    if precision not in config.precisions:
        raise ExportError(
            f"{detected} exports are {', '.join(config.precisions)} only (got precision {precision!r})"
        )
    check_ort_fits(model, precision, model_format)
    model.eval()

    output.parent.mkdir(parents=True, exist_ok=True)
    plan = _Plan(output, source or "", opset, atol, fuse, precision, int8_recipe, model_format, log, owned)
    # The attempt drops the model once its graphs are validated, when it was loaded here: the
    # list is the only reference left.
    held = [model]
    del model
    attempts = [True, False] if optimize else [False]
    for attempt, optimized in enumerate(attempts, start=1):
        try:
            return _export_attempt(held, config, plan, optimized)
        except ParityError as e:
            if attempt == len(attempts):
                raise
            log(f"the optimized graphs lost parity, exporting the plain ones:\n{e}")
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Plan:
    """`export_model`'s settings that every attempt (optimized, then plain) shares."""

    output: Path
    source: str
    opset: int
    atol: float
    fuse: bool
    precision: str
    int8_recipe: str
    model_format: str
    log: Callable[[str], None]
    release: bool  # free the model once the fp32 graphs are validated (it was loaded here)


def _export_attempt(held: list[Any], config: ExportConfig, plan: _Plan, optimized: bool) -> ExportReport:
    """One export (optimized or plain graphs) of the model `held[0]` into a temporary sibling of
    the output, moved there when it is whole; on any failure the temporary directories go and
    nothing is left there."""
    output = plan.output
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        ctx = ExportContext(
            held[0], config, tmp, opset=plan.opset, atol=plan.atol, log=plan.log, optimize=optimized,
            fuse=plan.fuse,
        )  # fmt: skip
        diffs, checked = _export_into(ctx, plan.source, map_weights=plan.release)
        if plan.release:
            held.clear()
            release_model(ctx)
        agreement: dict[str, Any] = {}
        quantization: dict[str, Any] = {}
        if plan.precision != "fp32":
            fp32, tmp = tmp, Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
            try:
                recipe = NAMED_RECIPES[plan.int8_recipe]
                lowered = lower_precision(fp32, tmp, plan.precision, plan.log, recipe)
                agreement, quantization = lowered.agreement, lowered.quantization
            finally:
                shutil.rmtree(fp32, ignore_errors=True)
        ort_info: dict[str, Any] = {}
        if plan.model_format == "ort":
            tmp, ort_manifest = ort_stage(tmp, plan.log)
            ort_info = ort_manifest.ort
        write_model_card(tmp)  # README.md: Hub metadata and the manifest's figures
        _follow_umask(tmp)
        _replace_dir(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportReport(
        output,
        config.arch,
        diffs,
        span_head=ctx.span_head,
        optimized=optimized,
        precision=plan.precision,
        agreement=agreement,
        quantization=quantization,
        parity=checked,
        model_format=plan.model_format,
        ort=ort_info,
    )


def _check_arguments(output: Path, arch: str | None, atol: float, precision: str, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ExportError(f"output {output} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ExportError(f"output directory {output} is not empty (pass overwrite=True / --overwrite)")
    if arch is not None:
        check_arch(arch)
    if atol <= 0 or not np.isfinite(atol):
        raise ValueError(f"atol must be a positive number, got {atol!r}")
    if precision not in ("fp32", *LOWER_PRECISIONS):
        raise ValueError(f"precision must be one of fp32, {', '.join(LOWER_PRECISIONS)}; got {precision!r}")


def _export_into(
    ctx: ExportContext, source: str, map_weights: bool = False
) -> tuple[dict[str, dict[str, float]], str]:
    """Write tokenizers, graphs and manifest into the context's (temporary) directory;
    returns the max abs diffs per graph and the line saying what parity was checked.
    `map_weights`: the model is the export's own, released after validation: its large
    parameters that the graphs hold verbatim are read from the graphs' files from then on."""
    ctx.write_tokenizers()
    ctx.check_tokenizers()
    graphs = trace(ctx)
    if map_weights:
        weights_from_files(ctx.modules, graphs, ctx.dir)
    trim()  # what tracing freed, before validation's sessions
    ctx.log("validating against torch ...")
    with large_blocks_mapped():
        parity = validate(ctx, graphs)
    checked = parity_line(parity, ctx.atol)
    diffs = parity.diffs
    more_graphs, more_diffs, decoder = ctx.config.export_more(ctx)
    graphs.update(more_graphs)
    diffs.update(more_diffs)
    e2e = {"end_to_end_scores": diffs["end_to_end"]["scores"]}
    graphs = {
        name: replace(
            g,
            max_abs_diff={**diffs[name], **(e2e if name == "scorer" else {})},
            optimization=_optimization(ctx, name),
        )
        for name, g in graphs.items()
    }
    replace(ctx.manifest(graphs, source), decoder=decoder).save(ctx.dir)
    return diffs, checked


def _optimization(ctx: ExportContext, graph: str) -> dict[str, Any]:
    """What the optimized wrappers and the fusion changed in `graph`, for the manifest."""
    done = ctx.config.rewrites(ctx, graph)
    return {**({"rewrites": done} if done else {}), **ctx.fused.get(graph, {})}


def _check_detected(detected: str, requested: str | None) -> None:
    if requested is not None and requested != detected:
        raise ExportError(
            f"--arch {requested} does not match the checkpoint, whose architecture is {detected}"
        )
    check_arch(detected)


def _follow_umask(tmp: Path) -> None:
    """Give the export the modes a plain `mkdir` / `open` would: `mkdtemp` makes its directory
    0700 (and some writers make private files), so serving it as another user, or from a
    shared file system, would fail. Directories get 0777 and files 0666 less the umask."""
    probe = tmp / ".umask-probe"
    probe.mkdir()  # created with 0777 & ~umask, read back: no process-wide umask change
    dir_mode = probe.stat().st_mode & 0o777
    probe.rmdir()
    file_mode = dir_mode & 0o666
    tmp.chmod(dir_mode)
    for path in tmp.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod(dir_mode if path.is_dir() else file_mode)


def _replace_dir(tmp: Path, output: Path) -> None:
    """Move the finished export into place; an old export there is removed only after."""
    if output.exists():
        old = output.with_name(f".{output.name}.old-{tmp.name[-8:]}")
        output.rename(old)
        tmp.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(output)
    if not (output / MANIFEST_NAME).is_file():
        raise ExportError(f"export to {output} did not complete")
