"""gliner's own `export_to_onnx` layout, run torch-free, against gliner's ONNX path.

Each offline checkpoint is exported by gliner 0.2.29 itself (model.onnx at the root,
or moved under onnx/, and its int8 model_quantized.onnx); gliner's
`GLiNER.from_pretrained(dir, load_onnx_model=True)` is the reference.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gliner_onnx import GLiNER
from gliner_onnx.errors import ManifestError

from .conftest import LABELS, TEXTS, Checkpoint
from .hub_cache import add_snapshot, commit_hash, directory_files

THRESHOLDS = (0.2, 0.5)


def _gliner_export(ckpt: Checkpoint, out: Path, quantize: bool = False) -> Path:
    ckpt.torch_model.export_to_onnx(str(out), quantize=quantize)
    return out


def _reference(directory: Path, onnx_file: str = "model.onnx") -> Any:
    from gliner import GLiNER as TorchGLiNER

    return TorchGLiNER.from_pretrained(
        str(directory), load_onnx_model=True, onnx_model_file=onnx_file, local_files_only=True
    )


def _assert_same(ours: list[list[dict[str, Any]]], ref: list[list[dict[str, Any]]]) -> None:
    assert len(ours) == len(ref)
    for got, want in zip(ours, ref):
        key = [(e["start"], e["end"], e["text"], e["label"]) for e in got]
        assert key == [(e["start"], e["end"], e["text"], e["label"]) for e in want]
        assert all(abs(a["score"] - b["score"]) <= 1e-4 for a, b in zip(got, want))


def _check_parity(directory: Path, onnx_file: str | None = None, **kw: Any) -> None:
    ours = GLiNER.from_pretrained(directory, onnx_file=onnx_file)
    ref = _reference(directory, onnx_file or "model.onnx")
    found = 0
    for threshold in THRESHOLDS:
        for flat in (True, False):
            args = {"threshold": threshold, "flat_ner": flat, "multi_label": not flat, **kw}
            expected = ref.inference(TEXTS, LABELS, **args)
            _assert_same(ours.inference(TEXTS, LABELS, batch_size=4, **args), expected)
            found += sum(map(len, expected))
    assert found > 0


@pytest.mark.parametrize(
    "fixture", ["uni_deberta", "uni_token_minilm", "bi_minilm_bert", "bi_token_deberta_bert"]
)
def test_entities_equal_glinerss_onnx_path(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ckpt: Checkpoint = request.getfixturevalue(fixture)
    out = _gliner_export(ckpt, tmp_path / "root")
    _check_parity(out)
    m = GLiNER.from_pretrained(out)
    assert m.arch == GLiNER.from_pretrained(ckpt.export_dir).arch  # detected as our export detects it
    # the same files with the graph under onnx/
    nested = Path(shutil.copytree(out, tmp_path / "nested"))
    (nested / "onnx").mkdir()
    (nested / "model.onnx").rename(nested / "onnx" / "model.onnx")
    a = GLiNER.from_pretrained(nested).inference(TEXTS, LABELS, threshold=0.3)
    _assert_same(a, m.inference(TEXTS, LABELS, threshold=0.3))


def test_quantized_file_and_per_text_labels(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    """int8 (dynamic quantization: activation scales over the whole batch, padding included)
    answers depend on the batch, so texts go one per call on both sides."""
    out = _gliner_export(uni_deberta, tmp_path / "q", quantize=True)
    assert (out / "model_quantized.onnx").is_file()
    ours = GLiNER.from_pretrained(out, onnx_file="model_quantized.onnx")
    ref = _reference(out, "model_quantized.onnx")
    for kw in ({"threshold": 0.3}, {"threshold": 0.5, "multi_label": True, "flat_ner": False}):
        got = [ours.predict_entities(t, LABELS, **kw) for t in TEXTS]
        _assert_same(got, [ref.predict_entities(t, LABELS, **kw) for t in TEXTS])
    with pytest.raises(ManifestError, match=r"no ONNX graph at model_int4\.onnx or onnx/model_int4\.onnx"):
        GLiNER.from_pretrained(out, onnx_file="model_int4.onnx")
    per_text = [LABELS[:2], LABELS[1:]] * 3
    fp32 = GLiNER.from_pretrained(out).inference(TEXTS, per_text, threshold=0.3)
    ref32 = _reference(out)
    _assert_same(fp32, [ref32.inference([t], ls, threshold=0.3)[0] for t, ls in zip(TEXTS, per_text)])


def test_long_text_is_windowed(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    """gliner truncates at max_len words; here the words past it get their entities."""
    out = _gliner_export(uni_deberta, tmp_path / "long")
    text = " ".join([TEXTS[0]] * 60)  # ~700 words, max_len 384
    ours = GLiNER.from_pretrained(out).predict_entities(text, LABELS, threshold=0.3)
    ref = _reference(out).predict_entities(text, LABELS, threshold=0.3)
    cut = max(e["end"] for e in ref)
    _assert_same([[e for e in ours if e["end"] <= cut // 2]], [[e for e in ref if e["end"] <= cut // 2]])
    assert max(e["end"] for e in ours) > len(text) - len(TEXTS[0])  # the last copy too


def test_loads_without_torch_and_from_the_hub_cache(uni_deberta: Checkpoint, tmp_path: Path) -> None:
    out = _gliner_export(uni_deberta, tmp_path / "hub")
    cache = tmp_path / "cache"
    add_snapshot(cache, "tiny-org/gliner-onnx-layout", directory_files(out), commit=commit_hash("og"))
    code = (
        "import sys\nfrom gliner_onnx import GLiNER\n"
        f"m = GLiNER.from_pretrained('tiny-org/gliner-onnx-layout', cache_dir={str(cache)!r})\n"
        f"print(m.inference({TEXTS!r}, {LABELS!r}, threshold=0.3))\n"
        "print('torch' in sys.modules, 'gliner' in sys.modules)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    found, flags = run.stdout.strip().splitlines()
    assert flags == "False False"
    assert found == repr(GLiNER.from_pretrained(out).inference(TEXTS, LABELS, threshold=0.3))


def test_refusals(bi_minilm_bert: Checkpoint, tmp_path: Path) -> None:
    out = _gliner_export(bi_minilm_bert, tmp_path / "bi")
    m = GLiNER.from_pretrained(out)
    with pytest.raises(ValueError, match="encodes labels inside the graph"):
        m.encode_labels(["person"])
    emb = bi_minilm_bert.torch_model.encode_labels(["person"]).numpy()
    with pytest.raises(ValueError, match="label_embeddings do not apply"):
        m.inference(TEXTS[:1], ["person"], label_embeddings=emb)
    # gliner's from_labels_embeddings variant (its 0.2.29 export_to_onnx cannot write it:
    # the keyword reaches _build_dummy_batch) and a foreign graph, built with onnx.helper
    base = ["input_ids", "attention_mask", "words_mask", "text_lengths", "span_idx", "span_mask"]
    with pytest.raises(ManifestError, match="precomputed labels_embeddings"):
        GLiNER.from_pretrained(_with_graph(out, [*base, "labels_embeddings"], "logits"))
    with pytest.raises(ManifestError, match=r"are not gliner's layout for biencoder_span"):
        GLiNER.from_pretrained(_with_graph(out, base, "scores"))


def _with_graph(directory: Path, inputs: list[str], output: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    float_in = {"labels_embeddings"}
    values = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT if n in float_in else TensorProto.INT64, None)
        for n in inputs
    ]
    node = helper.make_node("Cast", [inputs[-1]], [output], to=TensorProto.FLOAT)
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "foreign", values, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    target = directory.parent / f"{directory.name}-{output}-{len(inputs)}"
    shutil.copytree(directory, target)
    onnx.save(model, target / "model.onnx")
    return target


def test_gliners_relex_graphs_are_refused(relex_backbone: Path, tmp_path: Path) -> None:
    """gliner 0.2.29's relex export_to_onnx graph fails on texts other than its tracing one,
    in gliner's own ONNX path; the runtime refuses it with the reason."""
    from gliner_onnx.export.demo.backbones import build_gliner

    model = build_gliner(relex_backbone, seed=8, max_width=6, logit_scale=2.0, relations_layer="dot")
    out = tmp_path / "relex"
    model.export_to_onnx(str(out))
    ref = _reference(out)
    with pytest.raises(Exception, match="ScatterND"):
        ref.inference([TEXTS[0]], LABELS, relations=["met"], threshold=0.5)
    with pytest.raises(ManifestError, match=r"relex ONNX graphs \(uniencoder_span_relex\) are not supported"):
        GLiNER.from_pretrained(out)
