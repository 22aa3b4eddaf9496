"""The suite's engines: building the checkpoints and exports, loading every engine, and the
callables that are timed (gliner's calls, its bare session on captured feeds, ours cached and
uncached)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import quiet

from .data import THRESHOLD
from .timing import Call, Engine, Maker, Suite


@dataclass
class Assets:
    """A saved checkpoint, gliner's ONNX export of it and our export(s) of it."""

    arch: str
    checkpoint: Path
    gliner_onnx: Path
    ours: dict[str, Path]


def build_assets(
    arch: str,
    workdir: Path,
    given_ours: dict[str, Path],
    quantize: bool,
    suite: Suite,
    checkpoint: Path | None = None,
) -> Assets:
    """Save the demo checkpoint of `arch` (or take `checkpoint`), export it with gliner's
    export_to_onnx and (unless given) ours.

    Reuses what an earlier run left in `workdir`.
    """
    # Files built from a given checkpoint carry its name: the workdir may hold the demo's too.
    stem = arch if checkpoint is None else f"{arch}-{checkpoint.resolve().name}"
    ckpt = workdir / f"{arch}-checkpoint" if checkpoint is None else checkpoint
    gl_dir = workdir / f"{stem}-gliner-onnx"
    if not (ckpt / "gliner_config.json").is_file():
        from gliner_onnx.export.demo import build_demo

        suite.log(f"building the demo {arch} checkpoint in {ckpt}")
        with quiet():
            build_demo(arch).save_pretrained(ckpt)
    wanted = [gl_dir / "model.onnx"] + ([gl_dir / "model_quantized.onnx"] if quantize else [])
    if not all(p.is_file() for p in wanted):
        suite.log(f"gliner export_to_onnx(quantize={quantize}) of {arch}")
        model = load_gliner_torch(ckpt)
        with quiet():
            paths = model.export_to_onnx(gl_dir, quantize=quantize)
        if quantize and not paths.get("quantized_path"):
            raise RuntimeError("gliner's export_to_onnx(quantize=True) wrote no quantized model")
    ours = dict(given_ours)
    if not ours:
        out = workdir / f"{stem}-ours"
        if not (out / "gliner_onnx.json").is_file():
            from gliner_onnx.export import export_model

            suite.log(f"our default export of {arch} into {out}")
            with quiet():
                export_model(ckpt, out, overwrite=True, log=lambda _m: None)
        ours["fp32"] = out
    return Assets(arch, ckpt, gl_dir, ours)


def load_gliner_torch(checkpoint: Path) -> Any:
    from gliner import GLiNER

    return GLiNER.from_pretrained(str(checkpoint), local_files_only=True).eval()


def gliner_session_options(threads: int, spin: bool = True) -> Any:
    """gliner's own default session options (ORT_ENABLE_ALL) with `threads` intra-op threads.

    gliner builds exactly this when given no session_options, minus the thread count (ONNX
    Runtime's default: one thread per physical core). spin=False turns off the intra-op pool's
    spinning after each run, as our runtime does.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def load_gliner_onnx(export_dir: Path, onnx_file: str, threads: int, spin: bool = True) -> Any:
    from gliner import GLiNER

    return GLiNER.from_pretrained(
        str(export_dir),
        load_onnx_model=True,
        onnx_model_file=onnx_file,
        session_options=gliner_session_options(threads, spin),
        local_files_only=True,
    )


def load_ours(export_dir: Path, threads: int) -> Any:
    from gliner_onnx import GLiNER, SessionOptions

    return GLiNER.from_pretrained(export_dir, session_options=SessionOptions(intra_op_num_threads=threads))


def parse_named_dirs(items: Sequence[str], flag: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"{flag} wants NAME=DIR, got {item!r}")
        if name in out:
            raise SystemExit(f"{flag} {name} given twice")
        if not (Path(path) / "gliner_onnx.json").is_file():
            raise SystemExit(f"{flag} {name}: {path} is not a gliner-onnx export (no gliner_onnx.json)")
        out[name] = Path(path)
    return out


# ------------------------------------------------------------------------------------- engines
def predict_maker(model: Any) -> Maker:
    """gliner's user-facing calls: predict_entities for one text, inference(batch_size=) for several."""

    def make(texts: Sequence[str], labels: Sequence[str], batch: int) -> Call:
        texts, labels = list(texts), list(labels)
        if len(texts) == 1:
            return lambda: [model.predict_entities(texts[0], labels, threshold=THRESHOLD)]
        return lambda: model.inference(texts, labels, threshold=THRESHOLD, batch_size=batch)

    return make


class _FeedRecorder:
    """Stands in for an InferenceSession and keeps a copy of every feed passed to run()."""

    def __init__(self, session: Any):
        self._session = session
        self.feeds: list[dict[str, Any]] = []

    def run(self, output_names: Any, feeds: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.feeds.append({k: v.copy() for k, v in feeds.items()})
        return self._session.run(output_names, feeds, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def capture_feeds(
    model: Any, texts: Sequence[str], labels: Sequence[str], batch: int
) -> list[dict[str, Any]]:
    """The exact feeds gliner's ONNX wrapper gives its InferenceSession for this call."""
    wrapper = model.model  # gliner.runtime.onnx.ONNXRuntimeModel
    session = wrapper.session
    recorder = _FeedRecorder(session)
    wrapper.session = recorder
    try:
        predict_maker(model)(texts, labels, batch)()
    finally:
        wrapper.session = session
    return recorder.feeds


def session_maker(model: Any) -> Maker:
    def make(texts: Sequence[str], labels: Sequence[str], batch: int) -> Call:
        feeds = capture_feeds(model, texts, labels, batch)
        session = model.model.session
        return lambda: [session.run(None, f) for f in feeds]

    return make


class CachedCall:
    """Bi-encoders: labels encoded once with encode_labels (timed once: setup_ms), then
    predict_with_embeds per text on every call."""

    def __init__(self, model: Any, texts: Sequence[str], labels: Sequence[str]):
        self.model, self.texts, self.labels = model, list(texts), list(labels)
        if hasattr(model, "clear_label_cache"):
            model.clear_label_cache()  # ours: encode for real, not from an earlier case's cache
        t0 = time.perf_counter()
        self.embeddings = model.encode_labels(self.labels)
        self.setup_ms = (time.perf_counter() - t0) * 1000.0

    def __call__(self) -> list[list[dict[str, Any]]]:
        m, emb = self.model, self.embeddings
        return [m.predict_with_embeds(t, emb, self.labels, threshold=THRESHOLD) for t in self.texts]


def cached_maker(model: Any) -> Maker:
    return lambda texts, labels, batch: CachedCall(model, texts, labels)


def uncached_maker(model: Any) -> Maker:
    """Ours, bi-encoder: the label cache cleared before every call (labels encoded each time)."""
    inner = predict_maker(model)

    def make(texts: Sequence[str], labels: Sequence[str], batch: int) -> Call:
        fn = inner(texts, labels, batch)

        def call() -> Any:
            model.clear_label_cache()
            return fn()

        return call

    return make


def describe_ours(model: Any) -> dict[str, Any]:
    return {"dir": str(model.directory), "precision": model.manifest.precision}


@dataclass
class Models:
    """Everything loaded in the main process."""

    uni: list[Engine]
    bi: list[Engine]
    long: list[Engine]
    agree_uni: list[Engine]
    agree_bi: list[Engine]
    info: dict[str, Any]
    tokenizer: Any  # gliner's text tokenizer of the uni-encoder checkpoint


def load_models(uni: Assets, bi: Assets, threads: int, spin: bool, suite: Suite) -> Models:
    suite.log("loading every engine")
    torch_uni = load_gliner_torch(uni.checkpoint)
    gl_fp32 = load_gliner_onnx(uni.gliner_onnx, "model.onnx", threads, spin)
    gl_int8 = load_gliner_onnx(uni.gliner_onnx, "model_quantized.onnx", threads, spin)
    ours = {name: load_ours(d, threads) for name, d in uni.ours.items()}
    torch_bi = load_gliner_torch(bi.checkpoint)
    gl_bi = load_gliner_onnx(bi.gliner_onnx, "model.onnx", threads, spin)
    ours_bi = {name: load_ours(d, threads) for name, d in bi.ours.items()}
    for want, group in (("uniencoder_span", ours), ("biencoder_span", ours_bi)):
        for name, m in group.items():
            if m.arch != want:
                raise SystemExit(f"ours {name}: {m.directory} is a {m.arch} export, expected {want}")

    ours_engines = [Engine(f"ours {n}", predict_maker(m), family="ours") for n, m in ours.items()]
    uni_engines = [
        Engine("gliner torch", predict_maker(torch_uni), family="torch"),
        Engine("gliner onnx fp32", predict_maker(gl_fp32), family="gliner_onnx"),
        Engine("gliner onnx int8", predict_maker(gl_int8), family="gliner_onnx"),
        Engine("gliner session fp32", session_maker(gl_fp32), predicts=False, family="session"),
        Engine("gliner session int8", session_maker(gl_int8), predicts=False, family="session"),
        *ours_engines,
    ]
    bi_engines = [
        Engine("gliner torch", predict_maker(torch_bi), family="torch"),
        Engine("gliner torch cached", cached_maker(torch_bi), family="torch"),
        Engine("gliner onnx fp32", predict_maker(gl_bi), family="gliner_onnx"),
    ]
    for n, m in ours_bi.items():
        bi_engines.append(Engine(f"ours {n} cached", cached_maker(m), family="ours"))
        bi_engines.append(Engine(f"ours {n} uncached", uncached_maker(m), family="ours"))
    agree_bi = [
        Engine("gliner torch", predict_maker(torch_bi), family="torch"),
        Engine("gliner onnx fp32", predict_maker(gl_bi), family="gliner_onnx"),
        *[Engine(f"ours {n}", predict_maker(m), family="ours") for n, m in ours_bi.items()],
    ]
    tokenizer = torch_uni.data_processor.transformer_tokenizer
    info = {
        "ours_uni": {n: describe_ours(m) for n, m in ours.items()},
        "ours_bi": {n: describe_ours(m) for n, m in ours_bi.items()},
        "gliner_onnx_inputs": {
            "uniencoder_span": [i.name for i in gl_fp32.model.session.get_inputs()],
            "biencoder_span": [i.name for i in gl_bi.model.session.get_inputs()],
        },
        "gliner_onnx_intra_op_threads": gl_fp32.model.session.get_session_options().intra_op_num_threads,
        "ours_providers": next(iter(ours.values())).providers,
        "max_len_words": torch_uni.config.max_len,
        "subword_limit": tokenizer.model_max_length,
        "gliner_onnx_sizes_mb": {
            f"{a.arch}/{p.name}": round(p.stat().st_size / 2**20, 1)
            for a in (uni, bi)
            for p in sorted(a.gliner_onnx.glob("*.onnx"))
        },
    }
    return Models(
        uni=uni_engines,
        bi=bi_engines,
        long=[e for e in uni_engines if e.family != "session" and e.name != "gliner onnx int8"],
        agree_uni=[e for e in uni_engines if e.predicts],
        agree_bi=agree_bi,
        info=info,
        tokenizer=tokenizer,
    )
