"""Writing one ONNX graph into an export directory, weights in a data file beside it."""

from __future__ import annotations

import heapq
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import onnx

from gliner_onnx.manifest import GraphEntry, Manifest, sha256_file

# Tensors above this many bytes go to the external data file. ONNX Runtime then maps
# the weights instead of copying them out of the protobuf (measured on the MiniLM span
# model: peak memory at load 200 MB -> 111 MB).
EXTERNAL_DATA_THRESHOLD = 1024

# What `sys.getsizeof` adds to a bytes object's length: onnx's `save_model` moves a tensor to
# the data file when `sys.getsizeof(tensor.raw_data)` reaches its size threshold.
_BYTES_OVERHEAD = sys.getsizeof(b"")

# Element types whose values are not a whole number of bytes each, or have no fixed size.
_UNSIZED = {
    getattr(onnx.TensorProto, name)
    for name in ("STRING", "INT2", "UINT2", "INT4", "UINT4", "FLOAT4E2M1", "FLOAT6E2M3", "FLOAT6E3M2")
    if hasattr(onnx.TensorProto, name)
}

# Rewrites a block of a weight's bytes as it is copied (e.g. float32 -> float16): blocks hold
# whole elements of any dtype, as `_copy_bytes`' chunk is a multiple of 8 bytes.
Convert = Callable[[bytes], bytes]


def value_bytes(tensor: onnx.TensorProto) -> int:
    """The size of `tensor`'s values (its `raw_data`'s length, where it has one) from its dims
    and element type, without reading them: the Python protobuf runtime (upb) copies a bytes
    field on each access and `ByteSize()` encodes the whole message, which for a word-embedding
    table is hundreds of megabytes allocated and freed. Element types without a fixed size of
    whole bytes, or unknown to this onnx, are measured with `ByteSize()`."""
    if tensor.data_type not in _UNSIZED:
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        except (KeyError, ValueError):
            pass
        else:
            return math.prod(tensor.dims) * itemsize
    return int(tensor.ByteSize())


def _saved_apart(tensor: onnx.TensorProto) -> bool:
    """Whether onnx's `save_model` with `size_threshold=EXTERNAL_DATA_THRESHOLD` moves `tensor`
    to the data file (its test, `sys.getsizeof(tensor.raw_data) >= size_threshold`, without
    copying the data)."""
    return tensor.HasField("raw_data") and value_bytes(tensor) + _BYTES_OVERHEAD >= EXTERNAL_DATA_THRESHOLD


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Names a node reads: its inputs and its subgraphs' outer-scope references."""
    names = {i for i in node.input if i}
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            inner = {o for n in g.node for o in n.output} | {i.name for i in g.input}
            inner |= {t.name for t in g.initializer}
            for n in g.node:
                names |= _subgraph_inputs(n) - inner
    return names


def topological_sort(graph: onnx.GraphProto) -> None:
    """Order `graph`'s nodes so each comes after what it reads (subgraph references too),
    keeping the original order where it already holds. The fp16 converter and the
    quantizer append nodes at the end, which the ONNX checker rejects."""
    nodes = list(graph.node)
    produced_by = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [
        {produced_by[x] for x in _subgraph_inputs(n) if x in produced_by} - {i} for i, n in enumerate(nodes)
    ]
    users: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        raise ValueError(f"graph {graph.name!r} has a cycle")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def _move_external_data(
    proto: onnx.ModelProto, source: Path, directory: Path, data_file: str, convert: Mapping[str, Convert]
) -> bool:
    """Write `proto`'s weights into `directory / data_file` as `onnx.save_model` with
    `save_as_external_data` lays them out (initializers in order, each at the end of the file,
    those of at least `EXTERNAL_DATA_THRESHOLD` bytes with `sys.getsizeof`), the ones in data
    files under `source` copied from there in chunks (through `convert[name]` where it has the
    weight): the weights are never all in memory.
    False, writing nothing, when no weight of `proto` is in a data file."""
    from onnx.external_data_helper import ExternalDataInfo, set_external_data, uses_external_data

    if not any(uses_external_data(t) for t in proto.graph.initializer):
        return False
    with open(directory / data_file, "wb") as out:
        for t in proto.graph.initializer:
            offset = out.tell()
            if uses_external_data(t):
                info = ExternalDataInfo(t)
                with open(source / info.location, "rb") as src:
                    src.seek(info.offset or 0)
                    _copy_bytes(src, out, info.length, convert=convert.get(t.name))
                del t.external_data[:]
                t.data_location = onnx.TensorProto.EXTERNAL
                for key, value in (
                    ("location", data_file),
                    ("offset", offset),
                    ("length", out.tell() - offset),
                ):
                    entry = t.external_data.add()
                    entry.key, entry.value = key, str(value)
            elif _saved_apart(t):
                out.write(t.raw_data)
                set_external_data(t, data_file, offset, out.tell() - offset)
                t.ClearField("raw_data")
    return True


def _copy_bytes(
    src: BinaryIO, out: BinaryIO, length: int | None, chunk: int = 1 << 24, convert: Convert | None = None
) -> None:
    """Copy `length` bytes (None: the rest) from `src` to `out`, `chunk` at a time, each
    chunk through `convert` when given."""
    left = length
    while left is None or left > 0:
        block = src.read(chunk if left is None else min(chunk, left))
        if not block:
            if left is None:
                return
            raise ValueError(f"external data ends {left} bytes short")
        out.write(block if convert is None else convert(block))
        if left is not None:
            left -= len(block)


def write_graph(
    proto: onnx.ModelProto,
    directory: Path,
    name: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    source: Path | None = None,
    convert: Mapping[str, Convert] | None = None,
) -> GraphEntry:
    """Save `proto` as `<name>.onnx` (+ `<name>.onnx.data`), check it, and describe it.
    `source`: the directory of the data files of `proto`'s weights, where it was loaded
    without them (`onnx.load(..., load_external_data=False)`): they are copied file to file,
    the weights that `convert` names rewritten on the way."""
    file = f"{name}.onnx"
    data_file = f"{name}.onnx.data"
    moved = source is not None and _move_external_data(proto, source, directory, data_file, convert or {})
    has_weights = moved or any(_saved_apart(t) for t in proto.graph.initializer)
    if moved:
        onnx.save_model(proto, str(directory / file))
    elif has_weights:
        onnx.save_model(
            proto,
            str(directory / file),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_file,
            size_threshold=EXTERNAL_DATA_THRESHOLD,
        )
    else:
        onnx.save_model(proto, str(directory / file))
    onnx.checker.check_model(str(directory / file))
    return GraphEntry(
        file=file,
        sha256=sha256_file(directory / file),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        data_file=data_file if has_weights else None,
        data_sha256=sha256_file(directory / data_file) if has_weights else None,
    )


def copy_tokenizers(manifest: Manifest, src: Path, dst: Path) -> None:
    """Copy the tokenizer files `manifest` names from export `src` to `dst` (a converted copy)."""
    import shutil

    for tok in manifest.tokenizers.values():
        (dst / tok.file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / tok.file, dst / tok.file)
