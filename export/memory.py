"""Keeping an export's peak memory near one copy of the weights per stage.

An export holds the torch model (one copy of the weights) from loading to validation; every
stage that makes another copy adds to the peak. What this module removes, by stage:
- loading: gliner's default path builds a randomly initialised model, then loads the state
  dict into it (two copies); `load_assigned` has gliner build the model on the meta device and
  assign the loaded tensors (`low_cpu_mem_usage`: one copy), and falls back to the default path
  where that would not give the same model;
- tracing: the legacy exporter parses its own serialized graph back (a copy) to look for
  onnxscript functions of custom domains; `no_onnxscript_reparse` skips that search when no
  such function is registered, so it could find nothing;
- tracing: the tracer's ONNX shape inference copies each weight a node reads into the one-node
  graph it infers that node's shapes on, twice (the model proto and ONNX's data propagation):
  the word-embedding table's Gather alone held two more copies of the table (786 MB at
  DeBERTa-v3-small's shape), the export's peak; `weights_out_of_shape_inference` lets it see the
  weights of at least 1 MB as typed inputs, whose shapes are what it reads of them;
- tracing: the tracer serializes the graph with its weights in memory (three copies: its
  encoded graph, the serialized string, the bytes object) below protobuf's 2 GB;
  `weights_beside` has it encode the graph alone and writes the weights to a data file one at a
  time (`graph_io.write_graph` then copies them file to file);
- validation: the torch parameters that a written graph holds verbatim (the word embeddings:
  a third of DeBERTa-v3-small's weights, two thirds of mDeBERTa-v3-base's) are read from the
  graph's data file (`weights_from_files`), where only the rows validation looks up are
  resident, instead of a second copy in memory beside the graph's;
- lower precision: the torch model is not needed once the fp32 graphs are validated
  (`release_model`), and the C heap's pages it freed go back to the system (`trim`): glibc
  keeps freed blocks below its mmap threshold (which grows to 32 MB as large tensors are freed)
  in its arenas, about a gigabyte after a DeBERTa-v3-small export's validation;
- validation: glibc's heaps kept the blocks that the activations of a batch of long texts
  freed; `large_blocks_mapped` maps each large block on its own while validation runs;
- fp16: the converter retypes the graph without its weights, which are converted block by block
  as they are copied (`precision._fp16`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .patching import replaced


def load_assigned(load: Callable[..., Any]) -> Any:
    """`load(low_cpu_mem_usage=...)` (gliner's `from_pretrained` with its other arguments bound),
    the weights loaded once: the model built on the meta device, the state dict's tensors
    assigned to it. gliner falls back to its default path itself where the meta model would keep
    parameters the checkpoint lacks or buffers it cannot rebuild. Assigning keeps the checkpoint's
    dtype where the default path copies into float32 parameters: a checkpoint with other floating
    dtypes is loaded the default way, so that the model is the same either way."""
    try:
        model = load(low_cpu_mem_usage=True)
    except Exception:
        # e.g. gliner resizing the embeddings of a meta model (transformers' mean resizing reads
        # the values): the default path, whose errors are the real ones
        gc.collect()
        return load(low_cpu_mem_usage=False)
    if all(p.dtype == torch.float32 for p in model.parameters() if p.is_floating_point()):
        return model
    del model
    gc.collect()
    return load(low_cpu_mem_usage=False)


def _custom_onnxscript_functions() -> bool:
    """Whether torch.onnx's registry holds an onnxscript function (`to_function_proto`) of a
    domain other than ONNX's, aten's and prim's: the only functions `_add_onnxscript_fn` adds.
    True where the registry cannot be read (torch changed it): nothing is skipped then."""
    from torch.onnx._internal.torchscript_exporter import jit_utils, registration

    try:
        for name, group in registration.registry._registry.items():
            domain = name.split("::", 1)[0] if "::" in name else ""
            standard = jit_utils.is_aten(domain) or jit_utils.is_prim(domain) or jit_utils.is_onnx(domain)
            if not domain or standard:
                continue
            if any(hasattr(f, "to_function_proto") for f in group._functions._merged.values()):
                return True
    except AttributeError:
        return True
    return False


# Weights of at least this many bytes are typed inputs to the tracer's shape inference, not
# constants: never a shape or an index that inference would read the values of.
SHAPE_INFERENCE_MAX_BYTES = 1 << 20


@contextlib.contextmanager
def weights_out_of_shape_inference() -> Iterator[None]:
    """Within: the legacy exporter's graph-level ONNX shape inference is not given the weights of
    at least `SHAPE_INFERENCE_MAX_BYTES`. It would copy each into the one-node graph of every node
    that reads it (twice); without them the node's input is typed with the weight's dtype and
    shape, all that inference reads of a weight that is not a shape or an index (the traced graph
    is the same, tests/test_export_memory.py)."""
    jit: Any = torch._C
    original = jit._jit_pass_onnx_graph_shape_type_inference

    def without_large_weights(graph: Any, params_dict: dict[str, Any], opset: int) -> Any:
        small = {
            name: t
            for name, t in params_dict.items()
            if not isinstance(t, torch.Tensor) or t.numel() * t.element_size() < SHAPE_INFERENCE_MAX_BYTES
        }
        return original(graph, small, opset)

    with replaced(jit, "_jit_pass_onnx_graph_shape_type_inference", without_large_weights):
        yield


@contextlib.contextmanager
def no_onnxscript_reparse() -> Iterator[None]:
    """Within: the legacy exporter does not parse its serialized graph back to add onnxscript
    functions when no custom-domain one is registered (the search would find none, and the
    parse holds one more copy of every weight at the tracing peak). Otherwise unchanged."""
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

    if _custom_onnxscript_functions():
        yield
        return

    def unchanged(model_bytes: bytes, custom_opsets: Any) -> bytes:
        return model_bytes

    with replaced(onnx_proto_utils, "_add_onnxscript_fn", unchanged):
        yield


def release_model(ctx: Any) -> None:
    """Drop the context's references to the torch model (the model, its wrappers) and to the
    runtime tokenizers it checked, and collect, so that the weights (and gliner's tokenizers)
    are freed where nothing else holds the model."""
    ctx.model = None
    ctx.modules = {}
    ctx.text_tok = None
    ctx.label_tok = None
    gc.collect()
    trim()


@functools.cache
def _libc() -> Any:
    """The C library, looked up once (`find_library` runs a compiler or ldconfig: ~1 ms)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def _glibc(function: str) -> Any:
    """The C library's `function`, where the C library is glibc; None elsewhere (musl, macOS,
    Windows)."""
    return getattr(_libc(), function, None)


def trim() -> None:
    """Give the C heap's free pages back to the system (glibc's `malloc_trim`; nothing where the
    C library is another). Freed memory that glibc keeps counts in the process's resident set,
    and later allocations by other threads (ONNX Runtime's) do not always reuse it."""
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)


# glibc's mallopt parameter for its mmap threshold (malloc.h).
_M_MMAP_THRESHOLD = -3
# Within `large_blocks_mapped`, blocks of at least this many bytes get their own mapping.
MAPPED_BLOCK_BYTES = 1 << 20
# glibc's largest threshold of its own (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit): the one left after.
_GLIBC_MAX_THRESHOLD = 32 << 20


@contextlib.contextmanager
def large_blocks_mapped() -> Iterator[bool]:
    """Within: glibc gives a block of at least `MAPPED_BLOCK_BYTES` that its heaps cannot hold in
    their free space a mapping of its own, returned to the system when the block is freed,
    instead of growing a heap (`mallopt(M_MMAP_THRESHOLD)`); yields whether it does (False where
    the C library is not glibc).

    glibc raises its threshold itself to the largest block freed so far, up to 32 MB: once a
    large tensor has been freed, the heaps grow for blocks below that size, and what these free
    stays resident, often not reused, as later allocations come from other threads (ONNX
    Runtime's) or need a larger contiguous block. Validation allocates and frees such blocks (the
    long texts' activations, in torch and in ONNX Runtime) until the heaps hold hundreds of
    megabytes of free blocks: the export's peak. Mapped blocks cost page faults: cheap there,
    but the int8 quantizer's weight-sized temporaries made an int8 export a tenth slower, so
    only validation runs within. On exit the threshold is 32 MB, where glibc's own raises end
    (once it is set, glibc no longer raises it itself)."""
    mallopt = _glibc("mallopt")
    if mallopt is None or not mallopt(_M_MMAP_THRESHOLD, MAPPED_BLOCK_BYTES):
        yield False
        return
    try:
        yield True
    finally:
        mallopt(_M_MMAP_THRESHOLD, _GLIBC_MAX_THRESHOLD)


# Weights of at least this many bytes go to the tracer's scratch data file (every one of them is
# then past graph_io's EXTERNAL_DATA_THRESHOLD, so the written graph is the same as before).
SCRATCH_DATA_MIN_BYTES = 1 << 16
_NUMPY_DTYPES = {
    torch.float32,
    torch.float64,
    torch.float16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
}


def _encode_beside(proto_bytes: bytes, initializers: dict[str, torch.Tensor], data: Any) -> bytes:
    """The graph the legacy exporter encoded without its initializers (they are its graph's
    inputs then) with the initializers added as the exporter adds them: in the graph's input
    order, each one's input removed; the large ones' bytes written to `data` (an open file beside
    the graph) and referenced, the small ones inline."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.ModelProto.FromString(proto_bytes)
    inputs = list(proto.graph.input)
    del proto.graph.input[:]
    for value in inputs:
        tensor = initializers.get(value.name)
        if tensor is None:
            proto.graph.input.append(value)
            continue
        array = tensor.detach().cpu().contiguous().numpy()
        if array.nbytes < SCRATCH_DATA_MIN_BYTES:
            proto.graph.initializer.append(numpy_helper.from_array(array, value.name))
            continue
        entry = onnx.TensorProto(
            name=value.name, dims=array.shape, data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
        )
        offset = data.tell()
        data.write(array.data)  # no bytes copy of the tensor
        entry.data_location = onnx.TensorProto.EXTERNAL
        for key, v in (("location", Path(data.name).name), ("offset", offset), ("length", array.nbytes)):
            entry.external_data.add(key=key, value=str(v))
        proto.graph.initializer.append(entry)
    return proto.SerializeToString()


@contextlib.contextmanager
def weights_beside(traced: Path) -> Iterator[None]:
    """Within: the legacy exporter, tracing to `traced`, writes the weights to
    `<traced>.data` one at a time instead of serializing them in memory with the graph (the
    serialized graph, its bytes object and the encoder's graph held three copies of every
    weight at the tracing peak; the tracer does this itself only past protobuf's 2 GB). Where a
    weight's dtype has no numpy dtype, unchanged."""
    graph_type: Any = torch._C.Graph
    original = graph_type._export_onnx

    def export_onnx(graph: Any, initializers: dict[str, torch.Tensor], *args: Any) -> Any:
        keep_initializers_as_inputs = args[5]
        plain = not initializers or keep_initializers_as_inputs
        if plain or any(t.dtype not in _NUMPY_DTYPES for t in initializers.values()):
            return original(graph, initializers, *args)
        proto_bytes, export_map, external, names = original(graph, {}, *args)
        if external:  # the graph alone is past 2 GB: the tracer's own way
            return original(graph, initializers, *args)
        with open(f"{traced}.data", "wb") as data:
            proto_bytes = _encode_beside(proto_bytes, initializers, data)
        return proto_bytes, export_map, external, names

    with replaced(graph_type, "_export_onnx", export_onnx):
        yield


def validation_session_options() -> Any:
    """ONNX Runtime session options for the export's validation sessions: without the CPU
    memory arena, which keeps the most every run has needed (the long batch-3 case's activations)
    for the session's life; allocation does not change what the graphs compute."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    return options


# Parameters smaller than this stay in memory: what mapping them would save is small.
MAPPED_MIN_BYTES = 1 << 24


def weights_from_files(
    modules: Mapping[str, nn.Module], graphs: Mapping[str, Any], directory: Path
) -> list[str]:
    """Point each torch parameter of at least `MAPPED_MIN_BYTES` that a written graph holds
    verbatim (an initializer in its data file with the parameter's name, shape, dtype and bytes,
    compared block by block from the file) at those bytes: a copy-on-write map of the file, of
    which only the pages read are resident. The parameter's own memory is freed where nothing
    else holds it. For a model the export owns and releases after validation (the parameters
    stay mapped); nothing on other systems than POSIX ones (a mapped file cannot be deleted
    there). `graphs`: the written `GraphEntry`s by name. Returns the parameters mapped."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    if os.name != "posix":
        return []
    mapped = []
    for name, entry in graphs.items():
        module = modules.get(name)
        if module is None or entry.data_file is None:
            continue
        params = dict(module.named_parameters())
        proto = onnx.load(str(directory / entry.file), load_external_data=False)
        for t in proto.graph.initializer:
            param = params.get(t.name)
            if param is None or param.dtype != torch.float32 or not uses_external_data(t):
                continue
            info = ExternalDataInfo(t)
            path = directory / info.location
            shape = tuple(param.shape)
            nbytes = param.numel() * param.element_size()
            if (
                list(t.dims) != list(shape)
                or t.data_type != onnx.TensorProto.FLOAT
                or nbytes < MAPPED_MIN_BYTES
            ):
                continue
            if info.length not in (None, nbytes) or not _same_bytes(param, path, info.offset or 0):
                continue
            try:
                array = np.memmap(path, dtype=np.float32, mode="c", offset=info.offset or 0, shape=shape)
            except OSError:  # a file system that cannot map it: the parameter stays in memory
                continue
            param.data = torch.from_numpy(array)
            mapped.append(t.name)
    gc.collect()
    return mapped


def _same_bytes(param: torch.Tensor, path: Path, offset: int, block: int = 1 << 24) -> bool:
    """Whether the file at `path` holds `param`'s bytes at `offset` (read, not mapped)."""
    data = param.detach().contiguous().numpy().reshape(-1).view(np.uint8)
    with open(path, "rb") as f:
        f.seek(offset)
        for start in range(0, data.size, block):
            part = data[start : start + block]
            if f.read(part.size) != part.tobytes():
                return False
    return True
