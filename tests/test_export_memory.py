"""The mechanisms that keep an export's peak memory near one copy of the weights per stage
(`export/memory.py`, `precision.int8.quantize_file`): each gives what the plain path gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gliner_onnx.export import memory
from gliner_onnx.export.memory import (
    load_assigned,
    no_onnxscript_reparse,
    release_model,
    weights_beside,
    weights_from_files,
)
from gliner_onnx.export.precision.int8 import DEFAULT_RECIPE, quantize_file, quantize_graph

from .conftest import Checkpoint


def _state(model: Any) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def test_load_assigned_gives_the_default_loads_model_with_the_weights_loaded_once(
    uni_deberta: Checkpoint,
) -> None:
    from gliner import GLiNER

    calls: list[bool] = []

    def load(*, low_cpu_mem_usage: bool) -> Any:
        calls.append(low_cpu_mem_usage)
        return GLiNER.from_pretrained(
            str(uni_deberta.model_dir), local_files_only=True, low_cpu_mem_usage=low_cpu_mem_usage
        )

    assigned = load_assigned(load)
    assert calls == [True]
    default = GLiNER.from_pretrained(str(uni_deberta.model_dir), local_files_only=True)
    a, d = _state(assigned.model), _state(default.model)
    assert a.keys() == d.keys()
    for name, t in d.items():
        assert a[name].dtype == t.dtype and torch.equal(a[name], t), name
    # assigned: the parameters are the loaded tensors, not copies of them into a random init
    assert all(not p.is_meta for p in assigned.model.parameters())


def test_load_assigned_loads_a_non_fp32_checkpoint_the_default_way() -> None:
    """Assigning keeps the checkpoint's dtype; the default path gives float32 parameters."""
    calls: list[bool] = []

    def load(*, low_cpu_mem_usage: bool) -> Any:
        calls.append(low_cpu_mem_usage)
        return torch.nn.Linear(2, 2).to(torch.float16 if low_cpu_mem_usage else torch.float32)

    model = load_assigned(load)
    assert calls == [True, False]
    assert model.weight.dtype == torch.float32


def test_trace_without_the_onnxscript_reparse_writes_the_same_graph(tmp_path: Path) -> None:
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)).eval()
    x = torch.randn(2, 3, 8)
    original = onnx_proto_utils._add_onnxscript_fn
    files = []
    for skip in (False, True):
        path = tmp_path / f"{skip}.onnx"
        with no_onnxscript_reparse() if skip else torch.no_grad():
            if skip:
                assert onnx_proto_utils._add_onnxscript_fn is not original
            torch.onnx.export(module, (x,), str(path), opset_version=17, dynamo=False)
        files.append(path.read_bytes())
    assert onnx_proto_utils._add_onnxscript_fn is original
    assert files[0] == files[1]


def test_tracing_with_the_weights_beside_writes_the_same_files(
    uni_deberta: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tracer writing the weights to a data file one at a time, its onnxscript reparse
    skipped: every graph file and data file the same bytes as the tracer's own way."""
    import contextlib

    from gliner_onnx.export import context, export_model
    from gliner_onnx.manifest import load_manifest

    export_model(uni_deberta.model_dir, tmp_path / "beside", log=lambda _m: None)
    monkeypatch.setattr(context, "weights_beside", lambda _path: contextlib.nullcontext())
    monkeypatch.setattr(context, "no_onnxscript_reparse", contextlib.nullcontext)
    export_model(uni_deberta.model_dir, tmp_path / "plain", log=lambda _m: None)
    beside, plain = load_manifest(tmp_path / "beside"), load_manifest(tmp_path / "plain")
    assert beside.graphs.keys() == plain.graphs.keys()
    for name, g in plain.graphs.items():
        assert g.data_file is not None, name
        assert (beside.graphs[name].sha256, beside.graphs[name].data_sha256) == (g.sha256, g.data_sha256), (
            name
        )


@pytest.mark.parametrize(
    "checkpoint", ["uni_deberta", "bi_token_deberta_bert", "uni_modernbert", "token_relex_minilm"]
)
def test_tracing_with_the_weights_out_of_shape_inference_writes_the_same_files(
    checkpoint: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every weight of at least 1 KB (the word embeddings, the layers' products, the heads) a
    typed input to the tracer's shape inference instead of a constant: the same graph files
    (span and token heads, uni- and bi-encoders, DeBERTa, ModernBERT and BERT, relations)."""
    ckpt: Checkpoint = request.getfixturevalue(checkpoint)
    import contextlib

    from gliner_onnx.export import context, export_model
    from gliner_onnx.manifest import load_manifest

    jit: Any = torch._C
    seen: list[int] = []  # the largest weight each shape inference was given, in bytes
    inference = jit._jit_pass_onnx_graph_shape_type_inference

    def spy(graph: Any, params: dict[str, Any], opset: int) -> Any:
        sizes = [t.numel() * t.element_size() for t in params.values() if isinstance(t, torch.Tensor)]
        seen.append(max(sizes, default=0))
        return inference(graph, params, opset)

    monkeypatch.setattr(jit, "_jit_pass_onnx_graph_shape_type_inference", spy)
    monkeypatch.setattr(memory, "SHAPE_INFERENCE_MAX_BYTES", 1024)
    export_model(ckpt.model_dir, tmp_path / "hidden", log=lambda _m: None)
    assert seen and max(seen) < 1024
    seen.clear()
    monkeypatch.setattr(context, "weights_out_of_shape_inference", contextlib.nullcontext)
    export_model(ckpt.model_dir, tmp_path / "plain", log=lambda _m: None)
    assert max(seen) >= 30_000  # the word embeddings
    hidden, plain = load_manifest(tmp_path / "hidden"), load_manifest(tmp_path / "plain")
    for name, g in plain.graphs.items():
        assert (hidden.graphs[name].sha256, hidden.graphs[name].data_sha256) == (g.sha256, g.data_sha256), (
            name
        )


def test_weights_beside_encodes_initializers_as_the_tracer_does(tmp_path: Path) -> None:
    """Large and small weights, a folded constant: the graph traced with `weights_beside` loads
    as the same model as the tracer's own."""
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4096)).eval()
    x = torch.randn(2, 3, 8)
    plain, beside = tmp_path / "plain.onnx", tmp_path / "beside.onnx"
    torch.onnx.export(module, (x,), str(plain), opset_version=17, dynamo=False)
    with weights_beside(beside):
        torch.onnx.export(module, (x,), str(beside), opset_version=17, dynamo=False)
    assert (tmp_path / "beside.onnx.data").stat().st_size >= 16 * 4096 * 4
    loaded = [onnx.load(str(f)) for f in (beside, plain)]
    for t in loaded[0].graph.initializer:
        t.ClearField("data_location")  # onnx.load marks the tensors it read from a data file
    assert loaded[0].SerializeToString() == loaded[1].SerializeToString()


def test_release_model_drops_the_contexts_references() -> None:
    class Ctx:
        def __init__(self) -> None:
            self.model: Any = object()
            self.modules: dict[str, Any] = {"text_encoder": object()}
            self.text_tok: Any = object()
            self.label_tok: Any = None

    ctx = Ctx()
    release_model(ctx)
    assert ctx.model is None and ctx.modules == {} and ctx.text_tok is None


def _mapped_file(tensor: torch.Tensor) -> str | None:
    """The file that the memory `tensor` reads is mapped from (/proc/self/maps), if any."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) == 6 else None
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc/self/maps")
def test_weights_from_files_maps_the_parameters_a_graph_holds_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gliner_onnx.export.graph_io import write_graph

    monkeypatch.setattr(memory, "MAPPED_MIN_BYTES", 1024)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Embedding(1200, 16), torch.nn.Linear(16, 8)).eval()
    ids = torch.tensor([[3, 1100, 7]])
    traced = tmp_path / "traced.onnx"
    torch.onnx.export(module, (ids,), str(traced), opset_version=17, dynamo=False)
    out = tmp_path / "out"
    out.mkdir()
    entry = write_graph(onnx.load(str(traced)), out, "g", ["ids"], ["y"])
    assert entry.data_file is not None
    want = module(ids).detach()
    table = module[0].weight

    assert weights_from_files({"g": module}, {"g": entry}, out) == ["0.weight"]
    data = str((out / entry.data_file).resolve())
    assert _mapped_file(module[0].weight) == data
    assert _mapped_file(module[1].weight) != data  # the graph holds it transposed, as a MatMul's
    assert torch.equal(module(ids), want) and torch.equal(module[0].weight, table)

    # bytes that differ from the parameter's: left in memory
    fresh = torch.nn.Sequential(torch.nn.Embedding(1200, 16), torch.nn.Linear(16, 8)).eval()
    fresh[0].weight.data.copy_(table)
    fresh[0].weight.data[1100, 3] += 1e-3
    assert weights_from_files({"g": fresh}, {"g": entry}, out) == []
    assert _mapped_file(fresh[0].weight) != data


@pytest.mark.parametrize("checkpoint", ["uni_deberta", "span_decoder"])
def test_an_export_that_reads_its_weights_from_its_files_validates_and_writes_the_same_files(
    checkpoint: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The word embeddings read from the text encoder's data file during validation (the
    threshold lowered to the tiny model's sizes): parity holds, the files are the same; the
    decoder export traces its graphs after validation, from the mapped model."""
    ckpt: Checkpoint = request.getfixturevalue(checkpoint)
    from gliner_onnx.export import export_model, exporter
    from gliner_onnx.manifest import load_manifest

    export_model(ckpt.model_dir, tmp_path / "plain", log=lambda _m: None)
    mapped: list[str] = []

    def spy(*args: Any) -> list[str]:
        mapped.extend(weights_from_files(*args))
        return mapped

    monkeypatch.setattr(memory, "MAPPED_MIN_BYTES", 1024)
    monkeypatch.setattr(exporter, "weights_from_files", spy)
    export_model(ckpt.model_dir, tmp_path / "mapped", log=lambda _m: None)
    assert any(name.endswith("word_embeddings.weight") for name in mapped), mapped
    plain, got = load_manifest(tmp_path / "plain"), load_manifest(tmp_path / "mapped")
    for name, g in plain.graphs.items():
        assert (got.graphs[name].sha256, got.graphs[name].data_sha256) == (g.sha256, g.data_sha256), name
        assert got.graphs[name].max_abs_diff == g.max_abs_diff, name


def _embedding_graph() -> onnx.ModelProto:
    """ids -> Gather(table [1200, 16]) -> MatMul(W [16, 8]) -> y: an embedding table and a weight
    MatMul of a backbone layer, as int8's default recipe quantizes them."""
    rng = np.random.default_rng(0)
    table = rng.normal(0, 1, (1200, 16)).astype(np.float32)
    w = rng.normal(0, 0.1, (16, 8)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["h"], name="/embeddings/Gather"),
            helper.make_node("MatMul", ["h", "w"], ["y"], name="/encoder/layer.0/output/dense/MatMul"),
        ],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "t"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", 8])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_quantize_file_gives_quantize_graphs_graph(tmp_path: Path) -> None:
    proto = _embedding_graph()
    saved = _embedding_graph()  # saving with external data moves the weights out of the proto
    onnx.save_model(saved, str(tmp_path / "g.onnx"), save_as_external_data=True, location="g.onnx.data")
    copied, info = quantize_graph(proto, DEFAULT_RECIPE)
    from_file, file_info = quantize_file(tmp_path / "g.onnx", DEFAULT_RECIPE)
    assert info == file_info and info["precision"] == "int8" and info["int8_embedding_tables"] == 1
    assert from_file.SerializeToString() == copied.SerializeToString()
    # quantize_graph leaves its argument whole
    assert numpy_helper.to_array(proto.graph.initializer[0]).shape == (1200, 16)


@pytest.mark.parametrize(
    ("checkpoint", "graph"), [("uni_deberta", "text_encoder"), ("bi_minilm_bert", "label_encoder")]
)
def test_quantizing_without_the_quantizers_deep_copy_gives_the_same_graph(
    checkpoint: str, graph: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quantizer keeps the graph it loaded (no Gemm: the text encoder) or saves it rather than
    a deep copy to infer its value infos again (Gemms: the BERT label encoder's pooler): the same
    quantized graph as `quantize_dynamic` unchanged."""
    import contextlib

    from gliner_onnx.export.precision import int8

    path = request.getfixturevalue(checkpoint).export_dir / f"{graph}.onnx"
    gemms = sum(n.op_type == "Gemm" for n in onnx.load(str(path), load_external_data=False).graph.node)
    assert (gemms > 0) == (graph == "label_encoder")
    lean, lean_info = quantize_file(path, DEFAULT_RECIPE)
    monkeypatch.setattr(int8, "_reload_without_copy", contextlib.nullcontext)
    plain, plain_info = quantize_file(path, DEFAULT_RECIPE)
    assert lean_info == plain_info and lean_info["quantized_matmuls"] > 0
    assert lean.SerializeToString() == plain.SerializeToString()


_BLOCK_PLACEMENT = """
import numpy as np
from pathlib import Path
from gliner_onnx.export import memory


def placement(size):
    block = np.ones(size, dtype=np.uint8)
    address = block.ctypes.data
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return "heap" if fields[5:] == ["[heap]"] else "own"


big = np.ones(16 << 20, dtype=np.uint8)  # glibc maps it; freeing it raises glibc's own threshold
del big
print(placement(2 << 20))  # the heap grows by 2 MB, kept free after
with memory.large_blocks_mapped() as mapped:
    print(mapped, placement(4 << 20))  # more than the heap has free
print(placement(4 << 20), placement(40 << 20))
"""


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc/self/maps")
@pytest.mark.skipif(memory._glibc("mallopt") is None, reason="glibc's mallopt")
def test_large_blocks_mapped_gives_each_large_block_its_own_mapping_within() -> None:
    """In a fresh process, where a block that the heap's free space cannot hold lies (glibc's
    heap, grown, or a mapping of its own, unmapped when freed): after a 16 MB block is freed, a
    2 MB block in the heap; within `large_blocks_mapped`, a 4 MB block in its own; after it, a
    4 MB block in the heap again, a 40 MB block in its own."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _BLOCK_PLACEMENT], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["heap", "True", "own", "heap", "own"]


@pytest.mark.parametrize(
    "values",
    [
        np.zeros((3, 5), np.float32),
        np.zeros((7,), np.int64),
        np.zeros((2, 2, 3), np.float16),
        np.zeros((5, 4), np.int8),
        np.zeros((6,), np.bool_),
        np.zeros((), np.float64),
        np.zeros((0, 4), np.float32),
    ],
)
def test_value_bytes_is_the_length_of_the_raw_data(values: np.ndarray) -> None:
    from gliner_onnx.export.graph_io import value_bytes

    tensor = numpy_helper.from_array(values, "w")
    assert value_bytes(tensor) == len(tensor.raw_data)


def test_value_bytes_of_typed_fields_and_strings() -> None:
    from gliner_onnx.export.graph_io import value_bytes

    typed = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], [1.0] * 6)  # float_data, no raw_data
    assert value_bytes(typed) == 24
    text = helper.make_tensor("s", TensorProto.STRING, [2], [b"ab", b"cde"])
    assert value_bytes(text) == text.ByteSize()
    unknown = TensorProto(name="u", data_type=999, dims=[3], raw_data=b"abc")  # a type onnx lacks
    assert value_bytes(unknown) == unknown.ByteSize()


@pytest.mark.parametrize("length", [980, 990, 991, 992, 1000, 1024, 1100])
def test_write_graph_moves_what_onnx_save_moves_to_the_data_file(length: int, tmp_path: Path) -> None:
    """Around the threshold (which onnx's `save_model` compares with `sys.getsizeof(raw_data)`):
    a data file exactly where onnx's own test would move the weight."""
    import sys

    from gliner_onnx.export.graph_io import EXTERNAL_DATA_THRESHOLD, write_graph

    weight = numpy_helper.from_array(np.arange(length, dtype=np.uint8), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [length])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [length])],
        [weight],
    )
    entry = write_graph(helper.make_model(graph), tmp_path, "g", ["x"], ["y"])
    moved = sys.getsizeof(weight.raw_data) >= EXTERNAL_DATA_THRESHOLD
    assert (entry.data_file is not None) == moved
    assert (tmp_path / "g.onnx.data").is_file() == moved


def test_replaced_puts_the_original_back_however_the_block_ends() -> None:
    import types

    from gliner_onnx.export.patching import replaced

    def original() -> str:
        return "original"

    owner = types.SimpleNamespace(f=original)
    with replaced(owner, "f", lambda: "replaced"):
        assert owner.f() == "replaced"
    assert owner.f is original
    with pytest.raises(KeyError), replaced(owner, "f", None):
        assert owner.f is None
        raise KeyError("the call fails")
    assert owner.f is original
