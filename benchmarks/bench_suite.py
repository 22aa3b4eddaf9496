"""Performance benchmark suite (issue #6): gliner torch, gliner's own ONNX export, its raw session, ours.

    python benchmarks/bench_suite.py                                   # builds and exports everything
    python benchmarks/bench_suite.py --ours fp32=/tmp/x --ours int8=/tmp/y
    python benchmarks/bench_suite.py --quick --workdir /tmp/suite      # smoke check, ~2-3 minutes
    python benchmarks/bench_suite.py --wait-idle 60 --retries 2         # on a shared machine

One process, one checkpoint: the offline demo `uniencoder_span` (all-MiniLM-L6-v2, untrained heads,
fixed seed), saved with `save_pretrained` and loaded back the way a user loads one. Engines:

  gliner torch            GLiNER.from_pretrained(checkpoint), torch.set_num_threads(--threads)
  gliner onnx fp32/int8   gliner's export_to_onnx(quantize=True) loaded with load_onnx_model=True;
                          session options = gliner's own defaults (ORT_ENABLE_ALL) plus
                          intra_op_num_threads=--threads, passed through `session_options=`
  gliner session fp32/int8  only `session.run(None, feeds)` of that export, on the exact feeds its
                          wrapper passes (captured once): the floor for its single unoptimized graph
  ours NAME               gliner_onnx.GLiNER.from_pretrained(DIR, session_options=
                          SessionOptions(intra_op_num_threads=--threads)) for each --ours NAME=DIR
                          (default: our export of the checkpoint, as `fp32`)

The label-scaling bi-encoder part uses the demo `biencoder_span` (--bi-ours NAME=DIR, default our
export as `fp32`): gliner torch (labels encoded per call, and cached with encode_labels +
predict_with_embeds), gliner's ONNX export (its graph re-encodes the labels every call), ours
cached (encode_labels + predict_with_embeds) and uncached (label cache cleared before each call).

Timing: warm-up, then every engine of a case runs in blocks that alternate between engines (the
order reversed every other block), so that noise on a shared machine hits all engines alike;
medians (p50) and p90 are reported. The share of the CPUs that other processes used during each
case is measured (/proc/stat minus this process) and recorded; --wait-idle and --retries wait for
and re-time noisy cases (torch's OpenMP threads slow down 20x or more when another process
takes the cores, ONNX Runtime's far less). Peak memory comes from a fresh subprocess per engine
(VmHWM). Agreement is entity-level F1, (start, end, label) exact, against ours `fp32` at
threshold 0.5, on ~40 varied texts.

Writes a JSON results file (machine, versions, command, all figures), a PNG plot (matplotlib,
imported only when plotting) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # gliner's encode_labels progress bar
warnings.filterwarnings("ignore")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# The same ~60-word text and 5 labels as bench_latency.py.
sys.path.insert(0, str(HERE))
from bench_latency import LABELS, TEXT  # noqa: E402

LABEL_COUNTS = (5, 20, 50, 100, 200)
QUICK_LABEL_COUNTS = (5, 200)
LONG_WORDS = (400, 2000)
THROUGHPUT_TEXTS, THROUGHPUT_BATCH = 32, 8
THRESHOLD = 0.5
NOISY_SHARE = 0.1  # other processes' share of the CPUs above which a timed case counts as noisy

# Plausible entity type names for label scaling; the first five are LABELS.
# fmt: off
ENTITY_TYPES = [
    *LABELS,
    "country", "city", "state", "continent", "river", "mountain", "lake", "ocean", "island", "region",
    "company", "university", "school", "hospital", "government agency", "political party", "sports team",
    "band", "newspaper", "television channel", "museum", "airport", "bridge", "building", "stadium",
    "road", "railway station", "park", "planet", "star", "galaxy", "time", "duration", "money",
    "percentage", "quantity", "ordinal number", "cardinal number", "age", "temperature", "distance",
    "weight", "phone number", "email address", "url", "ip address", "postal code", "street address",
    "credit card number", "social security number", "passport number", "license plate", "bank account",
    "date of birth", "nationality", "religion", "language", "ethnic group", "job title", "title",
    "award", "prize", "law", "treaty", "court case", "court", "judge", "lawyer", "statute", "regulation",
    "contract", "patent", "trademark", "disease", "symptom", "drug", "medication", "dosage", "gene",
    "protein", "chemical", "cell type", "cell line", "anatomy", "organism", "species", "virus",
    "bacterium", "medical procedure", "medical device", "clinical trial", "lab test", "vaccine",
    "product", "software", "programming language", "operating system", "file format", "algorithm",
    "data set", "library", "framework", "api", "function name", "variable name", "version number",
    "hardware", "vehicle", "car model", "aircraft", "ship", "weapon", "food", "dish", "beverage",
    "ingredient", "plant", "animal", "color", "material", "book", "film", "song", "album",
    "television show", "video game", "painting", "artwork", "character", "fictional place", "author",
    "artist", "musician", "actor", "athlete", "politician", "scientist", "journalist", "doctor",
    "patient", "teacher", "student", "ceo", "founder", "investor", "stock ticker", "currency",
    "financial instrument", "index", "market", "industry", "brand", "conference", "festival",
    "holiday", "war", "battle", "election", "sport", "competition", "tournament", "match", "league",
    "season", "position", "department", "committee", "agency", "military unit", "police force",
    "crime", "charge", "sentence", "prison", "address", "neighborhood", "district", "county",
    "province", "facility", "landmark", "monument", "historical period", "dynasty", "empire",
    "philosophy", "theory", "field of study", "academic degree", "course", "exam", "journal",
    "publication", "citation", "website", "social media handle", "hashtag", "username", "password",
    "device", "component", "unit of measure", "frequency", "measurement", "weather event",
]
# fmt: on

# ~40 varied texts for the agreement check (threshold 0.5; an entity matches on start, end, label).
CORPUS = [
    # news
    TEXT,
    "Tesla shares fell 4.2% on Tuesday after Elon Musk said the Cybertruck would be delayed to 2025.",
    "The United Nations Security Council met in New York on Friday to discuss the crisis in Sudan.",
    "Lionel Messi scored twice as Inter Miami beat Orlando City 3-1 at DRV PNK Stadium on Saturday night.",
    "Prime Minister Rishi Sunak announced a general election for 4 July, ending months of speculation.",
    "Heavy rain caused flooding in Valencia, Spain, where more than 200 people died in October 2024.",
    "Microsoft agreed to buy Activision Blizzard for $68.7 billion, the largest deal in gaming history.",
    "NASA's Artemis II mission will send four astronauts around the Moon, including Christina Koch.",
    # biomedical
    "Patients with type 2 diabetes received 500 mg metformin twice daily for 12 weeks at Mayo Clinic.",
    "Mutations in BRCA1 and BRCA2 increase the risk of breast and ovarian cancer in carriers.",
    "The SARS-CoV-2 spike protein binds ACE2 receptors on epithelial cells of the respiratory tract.",
    "Aspirin 81 mg reduced the incidence of myocardial infarction but raised gastrointestinal bleeding.",
    "HeLa cells were treated with 10 µM cisplatin and apoptosis was measured by annexin V staining.",
    "In the phase III KEYNOTE-189 trial, pembrolizumab plus chemotherapy improved overall survival.",
    # legal
    "Pursuant to Article 6(1)(f) of Regulation (EU) 2016/679, the controller may process personal data.",
    "In Brown v. Board of Education, 347 U.S. 483 (1954), the Supreme Court ended school segregation.",
    "The Licensee shall pay Acme Holdings Ltd. a royalty of 3% of Net Sales within thirty (30) days.",
    "Judge Amy Berman Jackson sentenced the defendant to 87 months in federal prison on 14 March 2019.",
    "This Agreement is governed by the laws of the State of Delaware, without regard to conflict rules.",
    # code-ish
    "Call numpy.linalg.svd(A, full_matrices=False) and pass the result to scipy.sparse.csr_matrix.",
    "Run `pip install torch==2.3.1` then export CUDA_VISIBLE_DEVICES=0 before launching train.py.",
    "The function parse_config() in src/utils/io.py raises KeyError when 'model_name' is missing.",
    "Kubernetes 1.29 deprecated the flowcontrol.apiserver.k8s.io/v1beta2 API on AWS EKS clusters.",
    "ERROR 2024-05-01T12:03:44Z user_id=48213 ip=192.168.1.17 GET /api/v2/orders 500 (1532 ms)",
    # multilingual
    "Angela Merkel a rencontré Emmanuel Macron à Paris le 3 mars 2021 pour parler de l'Europe.",
    "Der Bundestag in Berlin hat am Donnerstag das Gesetz zur Cannabis-Legalisierung beschlossen.",
    "El presidente Pedro Sánchez viajó a Bruselas para reunirse con Ursula von der Leyen.",
    "東京証券取引所でトヨタ自動車の株価が3%上昇した。",
    "Президент Владимир Путин встретился с Си Цзиньпином в Москве в марте 2023 года.",
    "北京大学的研究人员在《自然》杂志上发表了关于量子计算的论文。",
    "Il Milan ha battuto la Juventus 2-0 a San Siro davanti a 75.000 tifosi.",
    # very short
    "Paris.",
    "Barack Obama",
    "Call me at 9.",
    "IBM vs. Oracle",
    "x",
    # numbers
    "Revenue rose from $1.2 billion in Q3 2022 to $1.45 billion in Q3 2023, up 20.8% year over year.",
    "The train leaves platform 9 at 14:35 and arrives in Manchester at 16:52, 2 h 17 min later.",
    "Order #A-10293 of 3 items (SKU 55-1200-07) shipped on 2023-11-02 to 221B Baker Street, London.",
    "The 2010 census counted 308,745,538 residents; California had 37,253,956 of them.",
]
AGREEMENT_LABELS = ["person", "organization", "location", "date", "money", "disease", "chemical", "law"]
WORD_RE = re.compile(r"\w+(?:[-_]\w+)*|\S")  # gliner's default word splitter

Call = Callable[[], Any]
# (texts, labels, batch_size) -> a zero-argument callable to time; it returns one entity list per text
# (or the raw session outputs for a session engine).
Maker = Callable[[Sequence[str], Sequence[str], int], Call]


@dataclass(frozen=True)
class Engine:
    name: str
    make: Maker
    predicts: bool = True  # False: the callable returns raw session outputs, not entities
    family: str = ""  # "torch" | "gliner_onnx" | "session" | "ours"


@dataclass
class Assets:
    """A saved checkpoint, gliner's ONNX export of it and our export(s) of it."""

    arch: str
    checkpoint: Path
    gliner_onnx: Path
    ours: dict[str, Path]


@dataclass
class Plan:
    """How many timed runs each section gets, and which label counts."""

    runs: int
    warmup: int
    blocks: int
    quick: bool = False
    batch1: int = 0
    throughput: int = 0
    labels: int = 0
    long: int = 0
    label_counts: tuple[int, ...] = LABEL_COUNTS

    def __post_init__(self) -> None:
        self.batch1 = self.runs
        self.throughput = max(1, self.runs // 5)
        self.labels = max(1, self.runs // 3)
        self.long = max(1, self.runs // 10)
        if self.quick:
            self.label_counts = QUICK_LABEL_COUNTS


@dataclass
class Suite:
    args: argparse.Namespace
    plan: Plan
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Per step: the share of all CPUs that *other* processes used while it ran (noise indicator).
    steps: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)  # the same, per timed case
    _mark: tuple[float, float, float] | None = None

    def log(self, msg: str) -> None:
        """Print a progress line and start a step; closes the previous step's CPU accounting."""
        now = (time.perf_counter(), *cpu_seconds())
        if self._mark is not None and self.steps:
            self.steps[-1]["others_cpu_share"] = others_share(self._mark, now)
            self.steps[-1]["seconds"] = now[0] - self._mark[0]
        self._mark = now
        if msg:
            self.steps.append({"step": msg})
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its waited children)."""
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    try:
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return own, own
    busy = sum(vals) - vals[3] - vals[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK"), own


def others_share(start: tuple[float, float, float], end: tuple[float, float, float]) -> float:
    """Share of all CPUs used by other processes between two (wall, busy, own) marks."""
    wall = end[0] - start[0]
    other = (end[1] - start[1]) - (end[2] - start[2])
    return max(0.0, other / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0


def noise_summary(attempts: list[dict[str, Any]], before: float) -> dict[str, Any]:
    """Time-weighted mean and max share of the CPUs other processes used during the kept attempts."""
    kept: dict[str, dict[str, Any]] = {}
    for a in attempts:  # the quietest attempt of each case is the one reported
        if a["case"] not in kept or a["others_cpu_share"] < kept[a["case"]]["others_cpu_share"]:
            kept[a["case"]] = a
    cases = list(kept.values())
    total = sum(c["seconds"] for c in cases)
    worst = max(cases, key=lambda c: c["others_cpu_share"], default=None)
    return {
        "before_start": before,
        "mean": sum(c["others_cpu_share"] * c["seconds"] for c in cases) / total if total else 0.0,
        "max": worst["others_cpu_share"] if worst else 0.0,
        "worst_case": worst["case"] if worst else "",
        "waited_s": sum(a["waited_s"] for a in attempts),
        "attempts": len(attempts),
    }


def idle_check(seconds: float = 2.0) -> float:
    """Share of all CPUs that other processes use right now, sampled over `seconds`."""
    start = (time.perf_counter(), *cpu_seconds())
    time.sleep(seconds)
    return others_share(start, (time.perf_counter(), *cpu_seconds()))


def wait_for_idle(max_s: float, threshold: float = NOISY_SHARE) -> float:
    """Wait (up to max_s seconds) until other processes use less than `threshold` of the CPUs
    for two seconds in a row; returns the seconds waited."""
    t0 = time.perf_counter()
    quiet_samples = 0
    while quiet_samples < 2 and time.perf_counter() - t0 < max_s:
        quiet_samples = quiet_samples + 1 if idle_check(1.0) < threshold else 0
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------- timing
def summarize(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000.0 for t in times)
    return {
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
        "min_ms": ms[0],
        "runs": len(ms),
    }


def measure(calls: dict[str, Call], runs: int, warmup: int, blocks: int) -> dict[str, list[float]]:
    """Warm up every callable, then time them in alternating blocks (order reversed every other block)."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    blocks = max(1, min(blocks, runs))
    sizes = [runs // blocks + (1 if b < runs % blocks else 0) for b in range(blocks)]
    times: dict[str, list[float]] = {n: [] for n in names}
    for b, size in enumerate(sizes):
        for name in names if b % 2 == 0 else reversed(names):
            fn = calls[name]
            for _ in range(size):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return times


def time_case(
    suite: Suite,
    case: str,
    engines: Sequence[Engine],
    texts: Sequence[str],
    labels: Sequence[str],
    batch: int,
    runs: int,
) -> dict[str, Any]:
    """p50/p90 of each engine on one case; an engine that cannot run it gets {"error": ...}.

    The first call, which checks that the engine runs the case, counts as one warm-up run. Each
    attempt first waits (--wait-idle) for other processes to leave the CPUs; an attempt during
    which they used more than NOISY_SHARE of the CPUs is repeated (--retries) and the quietest
    attempt is kept. Every attempt's share is recorded in `suite.cases`.
    """
    calls: dict[str, Call] = {}
    out: dict[str, Any] = {}
    for e in engines:
        try:
            fn = e.make(texts, labels, batch)
            fn()
            calls[e.name] = fn
        except Exception as exc:  # recorded, e.g. too many labels for a uni-encoder
            out[e.name] = {"error": f"{type(exc).__name__}: {exc}"}
    plan, args = suite.plan, suite.args
    best: tuple[float, dict[str, list[float]]] | None = None
    for attempt in range(1 + args.retries):
        waited = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else 0.0
        mark = (time.perf_counter(), *cpu_seconds())
        times = measure(calls, runs, max(0, plan.warmup - 1), plan.blocks)
        end = (time.perf_counter(), *cpu_seconds())
        share = others_share(mark, end)
        suite.cases.append(
            {
                "case": case,
                "attempt": attempt + 1,
                "seconds": end[0] - mark[0],
                "others_cpu_share": share,
                "waited_s": waited,
            }
        )
        if best is None or share < best[0]:
            best = (share, times)
        if share <= NOISY_SHARE:
            break
        suite.log(f"{case}: other processes used {share:.0%} of the CPUs")
    assert best is not None
    for name, times in best[1].items():
        out[name] = summarize(times)
        out[name]["others_cpu_share"] = best[0]
        setup_ms = getattr(calls[name], "setup_ms", None)
        if setup_ms is not None:
            out[name]["encode_labels_ms"] = setup_ms  # one call, untimed otherwise
    return {e.name: out[e.name] for e in engines}


# ------------------------------------------------------------------------------- building models
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


@contextmanager
def quiet() -> Iterator[None]:
    """Silence stdout and stderr at the file-descriptor level (the ONNX exporter and quantizer are chatty)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


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


# -------------------------------------------------------------------------------------- sections
def bench_batch1(suite: Suite, models: Models) -> None:
    suite.log("batch 1: one ~60-word text, 5 labels")
    suite.results["batch1"] = time_case(suite, "batch 1", models.uni, [TEXT], LABELS, 1, suite.plan.batch1)


def bench_throughput(suite: Suite, models: Models) -> None:
    suite.log(f"throughput: {THROUGHPUT_TEXTS} texts at batch {THROUGHPUT_BATCH}")
    texts = [TEXT] * THROUGHPUT_TEXTS
    res = time_case(suite, "throughput", models.uni, texts, LABELS, THROUGHPUT_BATCH, suite.plan.throughput)
    for r in res.values():
        if "p50_ms" in r:
            r["texts_per_s"] = THROUGHPUT_TEXTS / (r["p50_ms"] / 1000.0)
    suite.results["throughput"] = res


def prompt_subwords(tokenizer: Any, labels: Sequence[str]) -> int:
    """Subwords of the uni-encoder prompt: <<ENT>> label ... <<SEP>>, plus [CLS] and [SEP]."""
    pieces = sum(1 + len(tokenizer.tokenize(label)) for label in labels)
    return pieces + 1 + 2


def bench_labels(suite: Suite, models: Models, tokenizer: Any) -> None:
    text_subwords = len(tokenizer.tokenize(TEXT))
    limit = tokenizer.model_max_length
    uni: dict[str, Any] = {}
    bi: dict[str, Any] = {}
    for n in suite.plan.label_counts:
        labels = ENTITY_TYPES[:n]
        suite.log(f"label scaling: {n} labels (uni-encoder, bi-encoder)")
        prompt = prompt_subwords(tokenizer, labels)
        uni[str(n)] = {
            "prompt_subwords": prompt,
            "text_subwords": text_subwords,
            "fits_subword_limit": prompt + text_subwords <= limit,
            "engines": time_case(suite, f"uni {n} labels", models.uni, [TEXT], labels, 1, suite.plan.labels),
        }
        bi[str(n)] = {
            "engines": time_case(suite, f"bi {n} labels", models.bi, [TEXT], labels, 1, suite.plan.labels)
        }
    over = [n for n, r in uni.items() if not r["fits_subword_limit"]]
    if over:
        suite.notes.append(
            f"uni-encoder with {', '.join(over)} labels: prompt + text exceed the {limit}-subword limit; "
            "gliner silently truncates the text, ours runs it in smaller windows (or refuses when the "
            "labels alone leave no room)."
        )
    suite.results["labels_uni"] = uni
    suite.results["labels_bi"] = bi


def long_text(words: int) -> str:
    """About `words` words of varied prose, cycling through the corpus."""
    pool = [t for t in CORPUS if len(t.split()) > 8]
    out: list[str] = []
    i = 0
    while len(out) < words:
        out.extend(pool[i % len(pool)].split())
        i += 1
    return " ".join(out[:words])


def bench_long(suite: Suite, models: Models, max_len: int) -> None:
    res: dict[str, Any] = {}
    for words in LONG_WORDS:
        text = long_text(words)
        suite.log(f"long text: {words} words")
        res[str(words)] = {
            "words": len(text.split()),
            "gliner_words": len(WORD_RE.findall(text)),  # gliner's splitter counts punctuation too
            "engines": time_case(
                suite, f"long {words} words", models.long, [text], LABELS, 1, suite.plan.long
            ),
        }
    suite.notes.append(
        f"long texts: gliner (torch and onnx) reads only the first {max_len} words (and at most 512 "
        "subwords, prompt included) and drops the rest silently; ours runs the whole text in windows."
    )
    suite.results["long_text"] = res


def entity_keys(entities: list[dict[str, Any]]) -> set[tuple[int, int, str]]:
    return {(int(e["start"]), int(e["end"]), str(e["label"])) for e in entities}


def f1_against(pred: list[list[dict[str, Any]]], ref: list[list[dict[str, Any]]]) -> dict[str, Any]:
    tp = n_pred = n_ref = same = 0
    for p, r in zip(pred, ref):
        pk, rk = entity_keys(p), entity_keys(r)
        tp += len(pk & rk)
        n_pred += len(pk)
        n_ref += len(rk)
        same += pk == rk
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_ref if n_ref else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "entities": n_pred,
        "reference_entities": n_ref,
        "identical_texts": same,
        "texts": len(ref),
    }


def agreement(engines: Sequence[Engine], reference: str) -> dict[str, Any]:
    preds = {e.name: e.make(CORPUS, AGREEMENT_LABELS, 8)() for e in engines}
    return {name: f1_against(p, preds[reference]) for name, p in preds.items()}


def bench_agreement(suite: Suite, models: Models) -> None:
    suite.log(f"agreement on {len(CORPUS)} texts, threshold {THRESHOLD}")
    ours_uni = [e.name for e in models.agree_uni if e.family == "ours"]
    ours_bi = [e.name for e in models.agree_bi if e.family == "ours"]
    ref_uni = "ours fp32" if "ours fp32" in ours_uni else ours_uni[0]
    ref_bi = "ours fp32" if "ours fp32" in ours_bi else ours_bi[0]
    suite.results["agreement"] = {
        "reference": {"uniencoder_span": ref_uni, "biencoder_span": ref_bi},
        "labels": AGREEMENT_LABELS,
        "threshold": THRESHOLD,
        "uniencoder_span": agreement(models.agree_uni, ref_uni),
        "biencoder_span": agreement(models.agree_bi, ref_bi),
    }


# ------------------------------------------------------------------------------------ memory (RSS)
def rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    VmHWM where /proc has it: ru_maxrss also counts the parent's resident memory at fork time
    (Linux keeps it across exec), which would give every child the benchmark process's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def rss_child(kind: str, path: str, onnx_file: str, threads: int) -> int:
    """Run in a fresh process: load one engine, predict TEXT once, print peak RSS figures as JSON."""
    base = rss_mb()
    if kind == "ours":
        from gliner_onnx import GLiNER, SessionOptions

        imported = rss_mb()
        model = GLiNER.from_pretrained(path, session_options=SessionOptions(intra_op_num_threads=threads))
    else:
        import gliner  # noqa: F401  (its import cost counted before loading)
        import torch

        torch.set_num_threads(threads)
        imported = rss_mb()
        if kind == "gliner_torch":
            model = load_gliner_torch(Path(path))
        else:
            model = load_gliner_onnx(Path(path), onnx_file, threads)
    loaded = rss_mb()
    model.predict_entities(TEXT, LABELS, threshold=THRESHOLD)
    print(
        json.dumps(
            {
                "start_mb": base,
                "after_import_mb": imported,
                "after_load_mb": loaded,
                "peak_mb": rss_mb(),
                "torch_imported": "torch" in sys.modules,
            }
        )
    )
    return 0


def bench_rss(suite: Suite, uni: Assets) -> None:
    jobs: dict[str, tuple[str, Path, str]] = {
        "gliner torch": ("gliner_torch", uni.checkpoint, ""),
        "gliner onnx fp32": ("gliner_onnx", uni.gliner_onnx, "model.onnx"),
        "gliner onnx int8": ("gliner_onnx", uni.gliner_onnx, "model_quantized.onnx"),
        **{f"ours {n}": ("ours", d, "") for n, d in uni.ours.items()},
    }
    res: dict[str, Any] = {}
    for name, (kind, path, onnx_file) in jobs.items():
        suite.log(f"peak RSS, fresh process: {name}")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_rss-child", kind, "--_rss-path", str(path)]
        cmd += ["--_rss-onnx-file", onnx_file, "--threads", str(suite.args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            res[name] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        else:
            res[name] = json.loads(lines[-1])
    suite.results["rss"] = res


# ------------------------------------------------------------------------------------------ report
def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu or platform.processor(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    import gliner
    import numpy
    import onnxruntime
    import torch
    import transformers

    import gliner_onnx

    git = ["git", "-C", str(HERE), "describe", "--always", "--dirty"]
    commit = subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()
    return {
        "python": sys.version.split()[0],
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "gliner": gliner.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "gliner_onnx": gliner_onnx.__version__,
        "gliner_onnx_commit": commit,
    }


def p50(r: dict[str, Any] | None) -> float | None:
    return r.get("p50_ms") if r else None


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """Headline ratios (time over time; below 1 means ours is faster or smaller)."""
    out: dict[str, float] = {}

    def put(key: str, a: float | None, b: float | None) -> None:
        if a is not None and b:
            out[key] = a / b

    for case in ("batch1", "throughput"):
        r = results.get(case, {})
        for prec in ("fp32", "int8"):  # the share of gliner's ONNX time spent in its session
            put(
                f"{case}: gliner session {prec} / gliner onnx {prec}",
                p50(r.get(f"gliner session {prec}")),
                p50(r.get(f"gliner onnx {prec}")),
            )
        for ours in (n for n in r if n.startswith("ours ")):
            for other in ("gliner torch", "gliner onnx fp32", "gliner session fp32"):
                put(f"{case}: {ours} / {other}", p50(r.get(ours)), p50(r.get(other)))
            if ours == "ours int8":
                for other in ("gliner onnx int8", "gliner session int8"):
                    put(f"{case}: {ours} / {other}", p50(r.get(ours)), p50(r.get(other)))
    bi = results.get("labels_bi", {})
    if len(bi) > 1:
        lo, hi = next(iter(bi)), list(bi)[-1]
        for name in bi[hi]["engines"]:
            put(
                f"bi-encoder: {name} {hi} labels / {lo} labels",
                p50(bi[hi]["engines"][name]),
                p50(bi[lo]["engines"][name]),
            )
    rss = results.get("rss", {})
    torch_peak = rss.get("gliner torch", {}).get("peak_mb")
    for name, r in rss.items():
        if name != "gliner torch":
            put(f"peak RSS: {name} / gliner torch", r.get("peak_mb"), torch_peak)
    return out


def fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "–"
    if "error" in r:
        return "error"
    return fmt(r.get("p50_ms"))


def markdown(record: dict[str, Any]) -> str:
    res = record["results"]
    lines: list[str] = []
    add = lines.append
    m = record["machine"]
    add(f"Machine: {m['cpu_model']}, {m['cpus']} CPUs; {record['threads']} threads for every engine.")
    if "noise" in record:
        n = record["noise"]
        add(
            f"Other processes' share of the CPUs: {n['before_start']:.0%} before the start, "
            f"{n['mean']:.0%} on average during the timed cases, at most {n['max']:.0%} "
            f"({n['worst_case']})."
        )
    add(f"Command: `{record['command']}`")
    if "batch1" in res:
        add("\n### Batch 1 (one ~60-word text, 5 labels) and throughput (32 texts, batch 8)\n")
        add("| engine | batch 1 p50 (ms) | batch 1 p90 (ms) | x gliner torch | 32 texts (ms) | texts/s |")
        add("|---|---|---|---|---|---|")
        torch_p50 = p50(res["batch1"].get("gliner torch"))
        for name, r in res["batch1"].items():
            t = res.get("throughput", {}).get(name, {})
            rel = fmt(r["p50_ms"] / torch_p50, 2) if "p50_ms" in r and torch_p50 else "–"
            tput = fmt(t.get("texts_per_s"))
            add(f"| {name} | {cell(r)} | {fmt(r.get('p90_ms'))} | {rel} | {cell(t)} | {tput} |")
    for key, title in (("labels_uni", "uni-encoder span"), ("labels_bi", "bi-encoder span")):
        if key not in res:
            continue
        counts = list(res[key])
        add(f"\n### Label scaling, {title}, batch 1 (p50 ms)\n")
        head = [f"{n}{'*' if not res[key][n].get('fits_subword_limit', True) else ''}" for n in counts]
        add("| engine | " + " | ".join(head) + " |")
        add("|---|" + "---|" * len(counts))
        for name in res[key][counts[0]]["engines"]:
            add(f"| {name} | " + " | ".join(cell(res[key][n]["engines"].get(name)) for n in counts) + " |")
        for name, r in res[key][counts[0]]["engines"].items():
            if "encode_labels_ms" in r:  # the one-off label encoding of a cached engine
                row = (fmt(res[key][n]["engines"][name].get("encode_labels_ms")) for n in counts)
                add(f"| {name.removesuffix(' cached')}: encode_labels, once | " + " | ".join(row) + " |")
        if key == "labels_uni" and any(h.endswith("*") for h in head):
            add("\n\\* prompt + text exceed the subword limit (gliner truncates the text, ours windows it).")
    if "long_text" in res:
        counts = list(res["long_text"])
        add("\n### Long texts, batch 1, 5 labels (p50 ms)\n")
        head = (f"{r['words']} words ({r['gliner_words']} gliner words)" for r in res["long_text"].values())
        add("| engine | " + " | ".join(head) + " |")
        add("|---|" + "---|" * len(counts))
        for name in res["long_text"][counts[0]]["engines"]:
            row = " | ".join(cell(res["long_text"][n]["engines"].get(name)) for n in counts)
            add(f"| {name} | {row} |")
    if "rss" in res:
        add("\n### Peak resident memory, fresh process: load + one prediction (MB)\n")
        add("| engine | after imports | after load | peak | torch imported |")
        add("|---|---|---|---|---|")
        for name, r in res["rss"].items():
            if "error" in r:
                add(f"| {name} | error: {r['error']} | | | |")
                continue
            add(
                f"| {name} | {fmt(r['after_import_mb'], 0)} | {fmt(r['after_load_mb'], 0)} | "
                f"{fmt(r['peak_mb'], 0)} | {'yes' if r['torch_imported'] else 'no'} |"
            )
    if "agreement" in res:
        ag = res["agreement"]
        add(f"\n### Agreement with ours on {len(CORPUS)} texts (threshold {ag['threshold']}, exact spans)\n")
        add("| model | engine | precision | recall | F1 | entities | identical texts |")
        add("|---|---|---|---|---|---|---|")
        for arch in ("uniencoder_span", "biencoder_span"):
            for name, r in ag[arch].items():
                ref = " (reference)" if name == ag["reference"][arch] else ""
                add(
                    f"| {arch} | {name}{ref} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | "
                    f"{r['entities']} | {r['identical_texts']}/{r['texts']} |"
                )
    if record.get("ratios"):
        add("\n### Ratios (time or memory over time or memory; < 1: ours is faster or smaller)\n")
        add("| ratio | value |")
        add("|---|---|")
        for k, v in record["ratios"].items():
            add(f"| {k} | {v:.2f} |")
    if record.get("cases"):
        kept: dict[str, float] = {}
        for a in record["cases"]:
            kept[a["case"]] = min(a["others_cpu_share"], kept.get(a["case"], 1.0))
        add("\nOther processes' share of the CPUs per timed case (the attempt kept): ")
        add(", ".join(f"{c} {v:.0%}" for c, v in kept.items()) + ".")
    if record.get("notes"):
        add("")
        for note in record["notes"]:
            add(f"- {note}")
    return "\n".join(lines)


def plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = record["results"]
    fig, axes = plt.subplots(2, 3, figsize=(17, 10))
    colors = {"torch": "#d62728", "gliner_onnx": "#ff7f0e", "session": "#bcbd22", "ours": "#1f77b4"}
    family = record["engine_families"]

    def bars(ax: Any, data: dict[str, Any], key: str, title: str, unit: str, err: bool = False) -> None:
        items = [(n, r) for n, r in data.items() if key in r]
        names = [n for n, _ in items]
        vals = [r[key] for _, r in items]
        ends = [r["p90_ms"] if err else r[key] for _, r in items]
        yerr = [[0] * len(items), [e - v for e, v in zip(ends, vals)]] if err else None
        ax.barh(names, vals, xerr=yerr, color=[colors.get(family.get(n, ""), "grey") for n in names])
        for i, (v, e) in enumerate(zip(vals, ends)):
            ax.text(e, i, f" {v:,.1f}", va="center", fontsize=8)
        ax.set_xlim(0, max(ends, default=1) * 1.15)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel(unit)

    if "batch1" in res:
        title = "Batch 1: ~60 words, 5 labels (p50, whisker p90)"
        bars(axes[0, 0], res["batch1"], "p50_ms", title, "ms", err=True)
    if "throughput" in res:
        bars(axes[0, 1], res["throughput"], "texts_per_s", "Throughput: 32 texts, batch 8", "texts / s")
    if "rss" in res:
        bars(axes[0, 2], res["rss"], "peak_mb", "Peak RSS: fresh process, load + 1 prediction", "MB")
    for ax, key, title in (
        (axes[1, 0], "labels_uni", "Labels, uni-encoder span (batch 1)"),
        (axes[1, 1], "labels_bi", "Labels, bi-encoder span (batch 1)"),
    ):
        if key not in res:
            continue
        counts = list(res[key])
        first = res[key][counts[0]]["engines"]
        for name in first:
            pts = [(int(n), res[key][n]["engines"][name].get("p50_ms")) for n in counts]
            pts = [(x, y) for x, y in pts if y is not None]
            style = "--" if "uncached" in name or name.startswith("gliner session") else "-"
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], style, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([int(n) for n in counts], [str(n) for n in counts])
        ax.set_xlabel("number of labels")
        ax.set_ylabel("p50 ms")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    if "long_text" in res:
        ax = axes[1, 2]
        counts = list(res["long_text"])
        names = list(res["long_text"][counts[0]]["engines"])
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            ys = [p50(res["long_text"][n]["engines"].get(name)) or 0.0 for n in counts]
            xs = [j + i * width for j in range(len(counts))]
            ax.bar(xs, ys, width, label=name, color=colors.get(family.get(name, ""), None))
        ax.set_xticks(
            [j + 0.4 - width / 2 for j in range(len(counts))],
            [f"{res['long_text'][n]['words']} words" for n in counts],
        )
        ax.set_ylabel("p50 ms")
        ax.set_title("Long texts, batch 1, 5 labels (gliner truncates)")
        ax.legend(fontsize=7)
    m = record["machine"]
    noise = record.get("noise", {})
    caption = (
        f"{m['cpu_model']}, {m['cpus']} CPUs, {record['threads']} threads per engine; "
        f"onnxruntime {record['versions']['onnxruntime']}, torch {record['versions']['torch']}, "
        f"gliner {record['versions']['gliner']}; checkpoint: {record['checkpoint']}; other processes' "
        f"share of the CPUs during the timed cases: {noise.get('mean', 0):.0%} mean, "
        f"{noise.get('max', 0):.0%} max\n{record['command']}"
    )
    lines = [line for part in caption.split("\n") for line in textwrap.wrap(part, 190)]
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=8, va="bottom")
    fig.suptitle("gliner-onnx benchmark suite (same checkpoint, same process)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_suite.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--ours",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="one of our uniencoder_span exports of the demo checkpoint (repeatable); "
        "default: our export as fp32",
    )
    p.add_argument(
        "--bi-ours",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="one of our biencoder_span exports of the demo checkpoint (repeatable); "
        "default: our export as fp32",
    )
    p.add_argument(
        "--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads (default 2)"
    )
    p.add_argument(
        "--runs",
        type=int,
        default=None,
        help="timed runs at batch 1 (default 30, 3 with --quick); other cases scale from it",
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per engine per case (default 3)")
    p.add_argument(
        "--blocks",
        type=int,
        default=4,
        help="alternating blocks the runs of each case are split into (default 4)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny run counts and label counts 5 and 200: a smoke check of every section (about 2-3 "
        "minutes with a reused --workdir, plus the builds the first time)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON; the PNG goes beside it (default benchmarks/results/suite.json, "
        "suite_quick.json with --quick)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the built checkpoints and exports here and reuse them on the next run "
        "(default: a temporary directory, removed)",
    )
    p.add_argument(
        "--gliner-spin",
        choices=["on", "off"],
        default="on",
        help="intra-op thread spinning of gliner's ONNX sessions (default on: gliner's and ONNX "
        "Runtime's default; ours always runs with it off)",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each timed case, wait up to SECONDS for other processes to leave the CPUs idle "
        "(for shared machines; default 0: do not wait)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=0,
        help=f"re-time a case up to this many times while other processes used more than "
        f"{NOISY_SHARE * 100:.0f}%% of the CPUs during it, keeping the quietest attempt (default 0)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="a uniencoder_span gliner checkpoint to use instead of the demo's (e.g. the trained one "
        "bench_int8_trained.py --save-checkpoint keeps); --ours must then be exports of it",
    )
    p.add_argument("--skip-rss", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-plot", action="store_true", help="do not draw the PNG (matplotlib not needed)")
    p.add_argument(
        "--replot",
        type=Path,
        default=None,
        metavar="JSON",
        help="measure nothing: print the tables of an earlier results JSON and redraw its PNG",
    )
    p.add_argument("--_rss-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_rss-path", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_rss-onnx-file", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be at least 1")
    if args.runs is None:
        args.runs = 3 if args.quick else 30
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.runs < 1 or args.warmup < 0 or args.blocks < 1 or args.retries < 0 or args.wait_idle < 0:
        p.error("--runs and --blocks must be at least 1; --warmup, --retries and --wait-idle at least 0")
    if args.quick:
        args.blocks = min(args.blocks, 2)
    if args.out is None:
        args.out = RESULTS / ("suite_quick.json" if args.quick else "suite.json")
    return args


def run_suite(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    suite = Suite(args, Plan(args.runs, args.warmup, args.blocks, args.quick))
    busy = idle_check()
    if busy > 0.1:
        print(f"warning: other processes use {busy:.0%} of the CPUs; figures will be noisy", file=sys.stderr)
    t0 = time.perf_counter()
    uni = build_assets(
        "uniencoder_span", workdir, parse_named_dirs(args.ours, "--ours"), True, suite, args.checkpoint
    )
    bi = build_assets("biencoder_span", workdir, parse_named_dirs(args.bi_ours, "--bi-ours"), False, suite)
    models = load_models(uni, bi, args.threads, args.gliner_spin == "on", suite)
    bench_batch1(suite, models)
    bench_throughput(suite, models)
    bench_labels(suite, models, models.tokenizer)
    bench_long(suite, models, models.info["max_len_words"])
    bench_agreement(suite, models)
    if not args.skip_rss:
        bench_rss(suite, uni)
    suite.log("")  # closes the last step
    noise = noise_summary(suite.cases, busy)
    if noise["mean"] > NOISY_SHARE or noise["max"] > 2 * NOISY_SHARE:
        suite.notes.append(
            f"other processes used {noise['mean']:.0%} of the CPUs during the timed cases (at most "
            f"{noise['max']:.0%}, in '{noise['worst_case']}'): those figures are noisy (torch's "
            "OpenMP threads suffer most from sharing the cores); see `cases`."
        )
    suite.notes.append(
        "gliner onnx = gliner's pre/post-processing (torch) around one session; gliner session = that "
        "session alone on the captured feeds; the difference is gliner's own overhead."
    )
    families = {e.name: e.family for e in (*models.uni, *models.bi)}
    return {
        "suite": "bench_suite",
        "checkpoint": "demo: all-MiniLM-L6-v2 backbone(s), untrained heads (uniencoder_span, biencoder_span)"
        if args.checkpoint is None
        else f"uniencoder_span: {args.checkpoint}; biencoder_span: demo (all-MiniLM-L6-v2, untrained heads)",
        "threads": args.threads,
        "machine": machine_info(),
        "versions": versions(),
        "command": "python " + shlex.join(sys.argv),
        "settings": {
            "quick": args.quick,
            "runs": vars(suite.plan),
            "threshold": THRESHOLD,
            "label_counts": list(suite.plan.label_counts),
            "long_words": list(LONG_WORDS),
            "throughput": {"texts": THROUGHPUT_TEXTS, "batch_size": THROUGHPUT_BATCH},
            "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM"),
            "gliner_onnx_session_options": f"ORT_ENABLE_ALL, intra_op_num_threads={args.threads}, "
            f"intra-op spinning {args.gliner_spin} (gliner's default: on)",
            "ours_session_options": f"SessionOptions(intra_op_num_threads={args.threads}) "
            "(graph_optimization_level all, intra-op spinning off)",
        },
        "engines": models.info,
        "engine_families": families,
        "results": suite.results,
        "ratios": ratios(suite.results),
        "notes": suite.notes,
        "noise": noise,
        "cases": suite.cases,
        "steps": suite.steps,
        "elapsed_s": time.perf_counter() - t0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args._rss_child:
        return rss_child(args._rss_child, args._rss_path, args._rss_onnx_file, args.threads)
    if args.replot:
        record = json.loads(args.replot.read_text())
        print(markdown(record))
        if not args.no_plot:
            plot(record, args.replot.with_suffix(".png"))
        return 0
    tmp = None
    if args.workdir is None:
        tmp = Path(tempfile.mkdtemp(prefix="gliner-onnx-suite-"))
        workdir = tmp
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        record = run_suite(args, workdir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(record))
    written = [str(args.out)]
    if not args.no_plot:
        png = args.out.with_suffix(".png")
        plot(record, png)
        written.append(str(png))
    print(f"\nwritten: {', '.join(written)} ({record['elapsed_s']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
