"""Tests of ``tests/backbones.py`` (tiny offline backbones) and of the package's random GLiNERs
built on them (``export/demo/backbones.py``, ``export/demo/calibration.py``).

Everything runs offline (``HF_HUB_OFFLINE=1``, ``local_files_only=True``) on CPU, in well
under a minute: the builders take ~0.05 s each once torch/transformers are imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import hashlib
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")
gliner = pytest.importorskip("gliner")

from gliner import GLiNER  # noqa: E402
from gliner.model import BaseGLiNER  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: E402

from gliner_onnx.export import samples  # noqa: E402
from gliner_onnx.export.demo import calibration as C  # noqa: E402
from gliner_onnx.export.demo.backbones import DEFAULT_LOGIT_SCALE, build_gliner  # noqa: E402

from . import backbones as B  # noqa: E402

TEXT = "Angela Merkel visited 東京タワー in 2019."
SPREAD_TEXTS = (
    "Angela Merkel visited 東京タワー in 2019.",
    "Apple Inc. opened a new store in Zürich on 3 March 2021.",
    "Dr. Jean-Luc Picard met Barack Obama at the café near the Eiffel Tower in Paris.",
    "Lionel Messi signed with Inter Miami after leaving Paris Saint-Germain.",
)
SPREAD_LABELS = ("person", "company", "city")


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _all_scores(model, texts=SPREAD_TEXTS, labels=SPREAD_LABELS) -> list[float]:
    """Scores of every valid (span, label) pair, unfiltered."""
    return C.head_scores(model, list(texts), list(labels)).tolist()


def _predicted_scores(model, texts=SPREAD_TEXTS, labels=SPREAD_LABELS) -> list[float]:
    """What predict_entities keeps with no threshold, nesting and multiple labels allowed."""
    scores: list[float] = []
    for text in texts:
        entities = model.predict_entities(text, list(labels), flat_ner=False, multi_label=True, threshold=0.0)
        scores += [e["score"] for e in entities]
    return scores


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # The models are tiny: extra threads only add contention on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backbones")
    return {
        "deberta": B.make_tiny_deberta_v3(root / "deberta"),
        "bert": B.make_tiny_bert(root / "bert"),
        "bert_cased": B.make_tiny_bert(root / "bert_cased", lowercase=False),
    }


# ------------------------------------------------------------------------- determinism
def test_builders_are_deterministic(dirs, tmp_path):
    again = {
        "deberta": B.make_tiny_deberta_v3(tmp_path / "deberta"),
        "bert": B.make_tiny_bert(tmp_path / "bert"),
        "bert_cased": B.make_tiny_bert(tmp_path / "bert_cased", lowercase=False),
    }
    for name, directory in dirs.items():
        assert _digests(again[name]) == _digests(directory), name
    assert set(_digests(dirs["deberta"])) == {
        "config.json",
        "model.safetensors",
        "spm.model",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert set(_digests(dirs["bert"])) == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    }
    assert (dirs["bert"] / "tokenizer.json").read_bytes() != (
        dirs["bert_cased"] / "tokenizer.json"
    ).read_bytes()


def test_seed_changes_weights_not_tokenizer_or_caller_rng(dirs, tmp_path):
    state = torch.get_rng_state()
    other = B.make_tiny_deberta_v3(tmp_path / "deberta_seed1", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    a, b = _digests(dirs["deberta"]), _digests(other)
    assert a["model.safetensors"] != b["model.safetensors"]
    for name in ("tokenizer.json", "tokenizer_config.json", "spm.model", "config.json"):
        assert a[name] == b[name], name


def test_deterministic_across_processes(dirs, tmp_path):
    # tokenizers' own WordPiece/BPE trainers break ties in hash-map order, which differs
    # between processes; the builders must not.
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('bb', {B.__file__!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "m.make_tiny_deberta_v3(sys.argv[1] + '/deberta')\n"
        "m.make_tiny_bert(sys.argv[1] + '/bert')\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env, timeout=120)
    for name in ("deberta", "bert"):
        assert _digests(tmp_path / name) == _digests(dirs[name]), name


# ---------------------------------------------------------------------- loading offline
def test_backbones_load_offline(dirs):
    deberta = AutoModel.from_pretrained(dirs["deberta"], local_files_only=True)
    assert type(deberta).__name__ == "DebertaV2Model"
    cfg = AutoConfig.from_pretrained(dirs["deberta"], local_files_only=True)
    assert cfg.model_type == "deberta-v2"
    assert cfg.relative_attention is True and cfg.position_biased_input is False
    assert list(cfg.pos_att_type) == ["p2c", "c2p"]
    assert (cfg.position_buckets, cfg.norm_rel_ebd, cfg.share_att_key) == (256, "layer_norm", True)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (32, 2, 2)
    assert cfg.max_position_embeddings == 512 and cfg.vocab_size == 1000

    tok = AutoTokenizer.from_pretrained(dirs["deberta"], local_files_only=True)
    assert type(tok).__name__ == "DebertaV2Tokenizer"
    assert len(tok) == 1000
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert (tok.bos_token, tok.eos_token, tok.mask_token, tok.mask_token_id) == (
        "[CLS]",
        "[SEP]",
        "[MASK]",
        999,
    )

    bert = AutoModel.from_pretrained(dirs["bert"], local_files_only=True)
    assert type(bert).__name__ == "BertModel"
    btok = AutoTokenizer.from_pretrained(dirs["bert"], local_files_only=True)
    assert type(btok).__name__ == "BertTokenizer"
    assert len(btok) == 1000 and btok.model_max_length == 512
    assert btok.bos_token_id is None  # gliner then leaves add_bos/eos_token alone
    assert btok.tokenize("Café Zürich") == btok.tokenize("cafe zurich")  # uncased strips accents

    for model, tokenizer in ((deberta, tok), (bert, btok)):
        batch = tokenizer(["Hello world", TEXT], padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(**batch).last_hidden_state
        assert out.shape[-1] == 32 and torch.isfinite(out).all()


def test_vocab_size_and_width_options(tmp_path):
    d = B.make_tiny_deberta_v3(tmp_path / "d", hidden_size=48, num_layers=1, num_heads=4, vocab_size=700)
    cfg = AutoConfig.from_pretrained(d, local_files_only=True)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.vocab_size) == (
        48,
        1,
        4,
        700,
    )
    assert len(AutoTokenizer.from_pretrained(d, local_files_only=True)) == 700
    b = B.make_tiny_bert(tmp_path / "b", hidden_size=16, vocab_size=800)
    assert AutoConfig.from_pretrained(b, local_files_only=True).hidden_size == 16
    assert len(AutoTokenizer.from_pretrained(b, local_files_only=True)) == 800
    assert not B.tokenizer_roundtrip_mismatches(d) and not B.tokenizer_roundtrip_mismatches(b)


# ------------------------------------------------------------------ tokenizer round trip
@pytest.mark.parametrize("name", ["deberta", "bert", "bert_cased"])
def test_tokenizer_json_matches_transformers(dirs, tmp_path, name):
    texts = list(B.SAMPLE_TEXTS) + samples.corpus_lines()
    assert B.tokenizer_roundtrip_mismatches(dirs[name], texts) == []

    # gliner adds its tokens, then saves the tokenizer next to the model
    tok = AutoTokenizer.from_pretrained(dirs[name], local_files_only=True)
    tok.add_tokens(list(B.GLINER_TOKENS))
    tok.save_pretrained(tmp_path / "plain")
    assert B.tokenizer_roundtrip_mismatches(tmp_path / "plain", texts) == []

    tok = AutoTokenizer.from_pretrained(dirs[name], local_files_only=True)
    tok.add_tokens(list(B.GLINER_TOKENS), special_tokens=True)
    BaseGLiNER._set_tokenizer_spec_tokens(tok)  # add_bos/eos_token where bos/eos exist
    tok.save_pretrained(tmp_path / "special")
    assert B.tokenizer_roundtrip_mismatches(tmp_path / "special", texts) == []
    raw = Tokenizer.from_file(str(tmp_path / "special" / "tokenizer.json"))
    ids = raw.encode(["<<ENT>>", "person", "<<SEP>>", "Angela"], is_pretokenized=True).ids
    assert ids[1] == tok.convert_tokens_to_ids("<<ENT>>")
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


# ------------------------------------------------------------------------------ GLiNER
def _copy_backbones(dirs, tmp_path) -> dict[str, Path]:
    out = {}
    for name in ("deberta", "bert"):
        out[name] = tmp_path / "backbones" / name
        shutil.copytree(dirs[name], out[name])
    return out


@pytest.mark.parametrize(
    ("arch", "kwargs", "cls_name"),
    [
        ("uni_deberta", {"backbone": "deberta"}, "UniEncoderSpanGLiNER"),
        ("uni_bert_h48", {"backbone": "bert", "hidden_size": 48}, "UniEncoderSpanGLiNER"),
        ("bi_deberta_bert", {"backbone": "deberta", "labels": "bert"}, "BiEncoderSpanGLiNER"),
        ("token_deberta", {"backbone": "deberta", "span_mode": "token_level"}, "UniEncoderTokenGLiNER"),
    ],
)
def test_build_predict_save_reload_offline(dirs, tmp_path, arch, kwargs, cls_name):
    local = _copy_backbones(dirs, tmp_path)
    kwargs = dict(kwargs)
    backbone = local[kwargs.pop("backbone")]
    labels_dir = local[kwargs.pop("labels")] if "labels" in kwargs else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bi-encoder: "Resizing embeddings is not supported"
        model = build_gliner(
            backbone,
            labels_encoder_dir=labels_dir,
            max_width=4,
            logit_scale=DEFAULT_LOGIT_SCALE,
            **kwargs,
        )
    assert type(model).__name__ == cls_name
    assert not model.training and not model.model.training
    if "hidden_size" in kwargs:
        assert model.model.token_rep_layer.projection.out_features == 48
    labels = ["person", "location"]
    before = model.predict_entities(TEXT, labels, threshold=0.0)
    assert before and all(0.0 < e["score"] < 1.0 for e in before)

    saved = tmp_path / "gliner"
    model.save_pretrained(saved)
    config = json.loads((saved / "gliner_config.json").read_text())
    assert config["encoder_config"]["model_type"] in {"deberta-v2", "bert"}
    shutil.rmtree(tmp_path / "backbones")  # reloading must not need the backbone dirs
    reloaded = GLiNER.from_pretrained(str(saved), load_tokenizer=True, local_files_only=True)
    assert type(reloaded).__name__ == cls_name
    assert reloaded.predict_entities(TEXT, labels, threshold=0.0) == before
    assert _predicted_scores(reloaded) == _predicted_scores(model)
    assert _all_scores(reloaded) == _all_scores(model)

    # the tokenizer.json gliner saved encodes like the tokenizer gliner reloads
    tok = reloaded.data_processor.transformer_tokenizer
    assert B.tokenizer_roundtrip_mismatches(saved, tokenizer=tok) == []
    if labels_dir is not None:
        ltok = reloaded.data_processor.labels_tokenizer
        assert B.tokenizer_roundtrip_mismatches(saved / "labels_tokenizer", tokenizer=ltok) == []


def test_build_gliner_is_deterministic(dirs):
    state = torch.get_rng_state()
    a = build_gliner(dirs["deberta"], max_width=4, logit_scale=DEFAULT_LOGIT_SCALE)
    b = build_gliner(dirs["deberta"], max_width=4, logit_scale=DEFAULT_LOGIT_SCALE)
    c = build_gliner(dirs["deberta"], max_width=4, logit_scale=DEFAULT_LOGIT_SCALE, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["prompt_rep_layer.0.weight"], sc["prompt_rep_layer.0.weight"])
    # the backbone weights come from the directory, whatever the seed
    key = "token_rep_layer.bert_layer.model.encoder.layer.0.attention.self.query_proj.weight"
    assert torch.equal(sa[key], sc[key])


def _spread(scores: list[float]) -> tuple[float, float, float]:
    n = len(scores)
    low = sum(s < 0.3 for s in scores) / n
    high = sum(s > 0.7 for s in scores) / n
    return low, 1.0 - low - high, high


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backbone": "deberta"},
        {"backbone": "bert"},
        {"backbone": "deberta", "labels": "bert"},
    ],
    ids=["uni_deberta", "uni_bert", "bi_deberta_bert"],
)
def test_logit_scale_spreads_scores(dirs, kwargs):
    backbone = dirs[kwargs["backbone"]]
    labels_dir = dirs[kwargs["labels"]] if "labels" in kwargs else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = build_gliner(backbone, labels_encoder_dir=labels_dir, max_width=4)
        spread = build_gliner(
            backbone, labels_encoder_dir=labels_dir, max_width=4, logit_scale=DEFAULT_LOGIT_SCALE
        )
    raw_scores = _all_scores(raw)
    assert all(0.45 < s < 0.55 for s in raw_scores)  # gliner's own init: everything ~0.5
    scores = _all_scores(spread)
    assert len(scores) == len(raw_scores) > 100
    low, mid, high = _spread(scores)
    assert min(low, mid, high) >= 0.15, (low, mid, high)
    # what the decoder returns is spread too
    low, mid, high = _spread(_predicted_scores(spread))
    assert min(low, mid, high) >= 0.1, (low, mid, high)


def test_token_level_logits_are_calibrated(dirs):
    model = build_gliner(
        dirs["deberta"], span_mode="token_level", max_width=4, logit_scale=DEFAULT_LOGIT_SCALE
    )
    probs = _all_scores(model)  # start, end and inside of every (word, label)
    low, mid, high = _spread(probs)
    assert min(low, mid, high) >= 0.1, (low, mid, high)


def test_scale_head_logits_multiplies_logits_exactly(dirs):
    for span_mode in ("markerV0", "token_level"):
        model = build_gliner(dirs["bert"], span_mode=span_mode, max_width=4)
        before = C._capture_head(model, [TEXT], [SPREAD_LABELS])["out"][0].logits
        names = C.scale_head_logits(model, 3.0)
        after = C._capture_head(model, [TEXT], [SPREAD_LABELS])["out"][0].logits
        torch.testing.assert_close(after, 3.0 * before, rtol=1e-4, atol=1e-6)
        if span_mode == "markerV0":
            assert names == ["prompt_rep_layer.3", "span_rep_layer.span_rep_layer.out_project.3"]
        else:
            assert names == ["scorer.out_mlp.3"]
