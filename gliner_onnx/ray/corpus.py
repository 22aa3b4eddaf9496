"""Ray Data corpus jobs: annotate every row of a dataset on a pool of actors.

Each actor loads the export once; `map_batches` hands it Arrow batches, and it appends
an `entities` column (a list of {start, end, text, label, score} per row) to the input
columns. Ray Data restarts an actor that dies and retries its batches, so every input
row comes out exactly once.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from gliner_onnx.manifest import load_manifest
from gliner_onnx.runtime import GLiNER, InferenceParams, SessionOptions
from gliner_onnx.runtime.labels import normalize_label_set

from .config import check_positive, threads_for

ENTITY_TYPE = pa.list_(
    pa.struct(
        [
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("text", pa.string()),
            ("label", pa.string()),
            ("score", pa.float64()),
        ]
    )
)
IO_CPUS = 0.25  # what each read or write task asks of Ray: they wait on files, not on the CPU
_READERS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv", ".parquet": "parquet"}


class Annotator:
    """The actor: one loaded model; called on Arrow batches."""

    def __init__(
        self,
        export_dir: str,
        labels: list[str],
        text_field: str,
        output_field: str,
        params: InferenceParams,
        threads: int,
        batch_size: int,
    ):
        self.model = GLiNER.from_pretrained(
            export_dir, session_options=SessionOptions(intra_op_num_threads=threads, inter_op_num_threads=1)
        )
        self.labels = labels
        self.text_field = text_field
        self.output_field = output_field
        self.params = params
        self.batch_size = batch_size

    def __call__(self, table: pa.Table) -> pa.Table:
        if self.text_field not in table.column_names:
            raise ValueError(
                f"the input has no text field {self.text_field!r}; its columns: {table.column_names} "
                "(choose one with text_field= / --text-field)"
            )
        if self.output_field in table.column_names:
            raise ValueError(f"the input already has a column {self.output_field!r}")
        column = table.column(self.text_field)
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            column = column.cast(pa.string())
        texts = column.to_pylist()
        rows = [i for i, t in enumerate(texts) if t is not None]  # a null text has no entities
        found = self.model.extract(
            [texts[i] for i in rows],
            self.labels,
            threshold=self.params.threshold,
            flat_ner=self.params.flat_ner,
            multi_label=self.params.multi_label,
            batch_size=self.batch_size,
            return_relations=False,  # relex exports: entities only, relation scoring skipped
        )
        entities: list[list[dict[str, Any]]] = [[] for _ in texts]
        for i, r in zip(rows, found):
            entities[i] = r.entities
        return table.append_column(self.output_field, pa.array(entities, type=ENTITY_TYPE))


def read_corpus(path: str | Path) -> ray.data.Dataset:
    """A Ray Dataset of a JSONL, CSV or Parquet file (or a directory of them)."""
    p = Path(path)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file() and not f.name.startswith((".", "_"))]
        suffixes = {f.suffix.lower() for f in files}
    elif p.exists():
        suffixes = {p.suffix.lower()}
    else:
        raise FileNotFoundError(f"no such input file or directory: {path}")
    kinds = {_READERS.get(s) for s in suffixes}
    if len(kinds) != 1 or None in kinds:
        raise ValueError(
            f"cannot tell the format of {path} (suffixes {sorted(suffixes)}): "
            f"give .jsonl, .json, .ndjson, .csv or .parquet files"
        )
    kind = cast(str, kinds.pop())
    reader = {"json": ray.data.read_json, "csv": ray.data.read_csv, "parquet": ray.data.read_parquet}[kind]
    if "num_cpus" in inspect.signature(reader).parameters:  # Ray >= 2.4x names it
        return reader(str(p), num_cpus=IO_CPUS)
    return reader(str(p), ray_remote_args={"num_cpus": IO_CPUS})


def _check_pool_fits(actors: int, cpus_per_actor: float) -> None:
    # Not connected yet: Ray Data starts a local Ray with every CPU of this machine.
    total = ray.cluster_resources().get("CPU", 0.0) if ray.is_initialized() else float(os.cpu_count() or 1)
    if actors * cpus_per_actor > total - IO_CPUS:
        raise ValueError(
            f"{actors} actor(s) x {cpus_per_actor} CPU leave less than {IO_CPUS} of the cluster's "
            f"{total:g} CPUs for reading and writing, and the job would never finish: "
            "use fewer actors or a smaller cpus_per_actor"
        )


def annotate(
    dataset: ray.data.Dataset | str | Path,
    export_dir: str | Path,
    labels: Sequence[str],
    *,
    text_field: str = "text",
    output_field: str = "entities",
    threshold: float = 0.5,
    flat_ner: bool = True,
    multi_label: bool = False,
    actors: int = 1,
    cpus_per_actor: float = 1.0,
    batch_size: int = 32,
    threads: int | None = None,
) -> ray.data.Dataset:
    """The dataset with an `entities` column added (lazy: Ray Data runs it when consumed).

    dataset: a Ray Dataset, or the path of a JSONL / CSV / Parquet file or directory.
    actors: the size of the actor pool (one loaded model each), each granted
    `cpus_per_actor` CPUs and ceil(cpus_per_actor) ONNX Runtime threads unless `threads`
    says otherwise; batch_size rows per call. The pool must leave the cluster some CPU for
    reading and writing (Ray Data would wait forever): actors x cpus_per_actor is checked
    against the connected cluster's CPUs.
    """
    label_set = normalize_label_set(list(labels) if not isinstance(labels, str) else labels)
    params = InferenceParams(threshold=threshold, flat_ner=flat_ner, multi_label=multi_label)
    check_positive("actors", actors, integer=True)
    check_positive("cpus_per_actor", cpus_per_actor)
    check_positive("batch_size", batch_size, integer=True)
    if threads is not None:
        check_positive("threads", threads, integer=True)
    _check_pool_fits(actors, cpus_per_actor)
    for name, value in (("text_field", text_field), ("output_field", output_field)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty column name, got {value!r}")
    directory = Path(export_dir).resolve()
    load_manifest(directory, verify=False)  # fail here, not in every actor
    ds = read_corpus(dataset) if isinstance(dataset, (str, Path)) else dataset
    return ds.map_batches(
        Annotator,
        fn_constructor_kwargs={
            "export_dir": str(directory),
            "labels": list(label_set.names),
            "text_field": text_field,
            "output_field": output_field,
            "params": params,
            "threads": threads or threads_for(cpus_per_actor),
            "batch_size": batch_size,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        # Ray Data's actor pools restart an actor that dies (max_restarts=-1) and retry the
        # batches it held (max_task_retries=-1): tests/test_ray.py kills one mid-job.
    )


def annotate_files(
    export_dir: str | Path,
    input_path: str | Path,
    output_dir: str | Path,
    labels: Sequence[str],
    *,
    address: str | None = None,
    log: Callable[[str], None] = print,
    **kwargs: Any,
) -> dict[str, Any]:
    """`gliner-onnx annotate`: read, annotate, write Parquet; returns rows, seconds, rows/s."""
    out = Path(output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"the output {out} exists and is not an empty directory: give a new one")
    if not Path(input_path).exists():  # fail before starting Ray
        raise FileNotFoundError(f"no such input file or directory: {input_path}")
    load_manifest(export_dir, verify=False)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False if address is None else None)
    try:
        t0 = time.perf_counter()
        ds = annotate(input_path, export_dir, labels, **kwargs)
        ds.write_parquet(str(output_dir), ray_remote_args={"num_cpus": IO_CPUS})
        seconds = time.perf_counter() - t0
        rows = sum(pq.read_metadata(f).num_rows for f in out.rglob("*.parquet"))
    finally:
        if started:
            ray.shutdown()
    summary = {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds else None}
    log(f"annotated {rows} rows into {output_dir} in {seconds:.1f} s ({summary['rows_per_s']:.1f} rows/s)")
    return summary
