"""The Ray Serve deployment and the Ray Data corpus jobs, on one local Ray (2 CPUs).

Skipped only when Ray is not installed (CI installs the `ray` extra). The request checks and
the batching run without Ray: tests/test_ray_wire.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .conftest import LABELS, TEXTS, Checkpoint
from .test_ray_wire import BAD_BODIES, THRESHOLD, same_entities

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def model(uni_deberta: Checkpoint) -> Any:
    from gliner_onnx import GLiNER

    return GLiNER.from_pretrained(uni_deberta.export_dir)


# ------------------------------------------------------------ on a local Ray
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def server(cluster: Any, uni_deberta: Checkpoint) -> str:
    from gliner_onnx.ray import ServeConfig, start

    config = ServeConfig(
        str(uni_deberta.export_dir),
        port=_free_port(),
        cpus_per_replica=0.5,
        max_batch_size=8,
        batch_wait_timeout_ms=50,
    )
    start(config)
    return f"http://127.0.0.1:{config.port}"


def _post(url: str, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


def test_health(server: str) -> None:
    status, body = _get(f"{server}/gliner/health")
    assert status == 200 and body["status"] == "ok" and body["arch"] == "uniencoder_span"


def test_served_answers_equal_in_process(server: str, model: Any) -> None:
    bodies: list[dict[str, Any]] = [{"text": t, "labels": LABELS, "threshold": THRESHOLD} for t in TEXTS]
    bodies += [
        {"text": TEXTS[0], "labels": LABELS[:2], "flat_ner": False, "multi_label": True, "threshold": 0.2},
        {"text": TEXTS[1], "labels": {"person": "person", "place": "location"}},
    ]
    with ThreadPoolExecutor(len(bodies)) as pool:  # concurrent: the replica batches them
        answers = list(pool.map(lambda b: _post(f"{server}/gliner", b), bodies))
    for b, (status, answer) in zip(bodies, answers):
        assert status == 200
        want = model.inference(
            [b["text"]],
            b["labels"],
            threshold=b.get("threshold", 0.5),
            flat_ner=b.get("flat_ner", True),
            multi_label=b.get("multi_label", False),
        )[0]
        assert set(answer) == {"entities"} and same_entities(answer["entities"], want)


def test_gliner_client_against_our_server(server: str, model: Any) -> None:
    from gliner.serve import GLiNERClient

    client = GLiNERClient(base_url=server, route_prefix="/gliner")
    got = client.predict(TEXTS, labels=LABELS, threshold=THRESHOLD)
    assert isinstance(got, list) and len(got) == len(TEXTS)
    for text, answer in zip(TEXTS, got):
        assert same_entities(answer["entities"], model.inference([text], LABELS, threshold=THRESHOLD)[0])
    one = client.predict(TEXTS[0], labels=LABELS)
    assert isinstance(one, dict) and same_entities(one["entities"], model.inference(TEXTS[0], LABELS)[0])


def test_bad_requests_get_400_and_good_ones_batched_with_them_succeed(server: str, model: Any) -> None:
    poisoned = {"text": TEXTS[0], "labels": ["person", model.manifest.ent_token]}
    bodies: list[bytes | dict[str, Any]] = [b for b, _ in BAD_BODIES[:8]] + [poisoned]
    good = [{"text": t, "labels": LABELS, "threshold": THRESHOLD} for t in TEXTS[:4]]
    mixed = [x for pair in zip(bodies, good + good + good) for x in pair]
    with ThreadPoolExecutor(len(mixed)) as pool:
        answers = list(pool.map(lambda b: _post(f"{server}/gliner", b), mixed))
    for body, (status, answer) in zip(mixed, answers):
        if body in good:
            assert status == 200, answer
            want = model.inference([body["text"]], LABELS, threshold=THRESHOLD)[0]  # type: ignore[index]
            assert same_entities(answer["entities"], want)
        elif body is poisoned:
            assert status == 400 and model.manifest.ent_token in answer["error"]
        else:
            field = dict(BAD_BODIES)[body]  # type: ignore[index]
            assert (status, answer["field"]) == (400, field), answer
    status, answer = _post(f"{server}/gliner", good[0])  # the replica keeps serving
    assert status == 200 and same_entities(
        answer["entities"], model.inference(TEXTS[0], LABELS, threshold=THRESHOLD)[0]
    )


def test_cli_serve_joins_the_cluster_and_stops_on_ctrl_c(server: str, uni_deberta: Checkpoint) -> None:
    address = ray.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "gliner_onnx.cli", "serve", str(uni_deberta.export_dir)]
    cmd += ["--address", address, "--route-prefix", "/cli", "--cpus-per-replica", "0.25"]
    # PYTHONFAULTHANDLER: a CLI that does not stop is sent SIGABRT and prints every thread's stack.
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    # Started with SIGINT ignored, as a non-interactive shell starts a background job (and as CI
    # started this suite once): the CLI must still stop on it.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Ctrl-C stops" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(120), "".join(lines)
        status, body = _get(f"{server}/cli/health")
        assert status == 200 and body["status"] == "ok"
        status, answer = _post(f"{server}/cli", {"text": TEXTS[0], "labels": LABELS})
        assert status == 200 and "entities" in answer
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(30)
            raise AssertionError("no exit 120 s after Ctrl-C:\n" + "".join(lines)) from None
        assert code == 0, "".join(lines)
    assert _get(f"{server}/cli/health")[0] == 404  # its app is gone ...
    assert _get(f"{server}/gliner/health")[0] == 200  # ... the cluster's other apps are not


# ------------------------------------------------------------ corpus jobs
N_ROWS = 120


def _rows() -> list[dict[str, Any]]:
    return [{"id": i, "text": TEXTS[i % len(TEXTS)], "source": f"doc-{i}"} for i in range(N_ROWS)]


def _check_rows(rows: list[dict[str, Any]], model: Any) -> None:
    assert sorted(r["id"] for r in rows) == list(range(N_ROWS))  # every row exactly once
    want = model.inference(TEXTS, LABELS)
    for r in rows:
        assert r["source"] == f"doc-{r['id']}" and r["text"] == TEXTS[r["id"] % len(TEXTS)]
        assert same_entities(list(r["entities"]), want[r["id"] % len(TEXTS)])


def test_annotate_files_writes_parquet(
    cluster: Any, uni_deberta: Checkpoint, model: Any, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from gliner_onnx.ray import annotate_files

    src = tmp_path / "corpus.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    out = tmp_path / "out"
    summary = annotate_files(
        uni_deberta.export_dir,
        src,
        out,
        LABELS,
        actors=2,
        cpus_per_actor=0.5,
        batch_size=16,
        log=lambda _m: None,
    )
    assert summary["rows"] == N_ROWS
    table = pq.read_table(out)
    assert set(table.column_names) == {"id", "text", "source", "entities"}
    _check_rows(table.to_pylist(), model)


def test_read_corpus_formats(cluster: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet as pq

    from gliner_onnx.ray import read_corpus

    table = pa.Table.from_pylist(_rows()[:5])
    pyarrow.csv.write_csv(table, tmp_path / "c.csv")
    pq.write_table(table, tmp_path / "p.parquet")
    assert sorted(r["id"] for r in read_corpus(tmp_path / "c.csv").take_all()) == list(range(5))
    assert read_corpus(tmp_path / "p.parquet").count() == 5  # from the file's metadata
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.txt"):
        read_corpus(tmp_path / "notes.txt")


def test_pool_that_leaves_no_cpu_for_io_is_refused(cluster: Any, uni_deberta: Checkpoint) -> None:
    from gliner_onnx.ray import annotate

    with pytest.raises(ValueError, match="fewer actors"):
        annotate(ray.data.from_items(_rows()), uni_deberta.export_dir, LABELS, actors=2, cpus_per_actor=1)


@ray.remote(num_cpus=0)
class Gate:
    """Holds the later blocks back until the test has killed the annotating actor."""

    def __init__(self) -> None:
        self.opened = False

    def open(self) -> None:
        self.opened = True

    async def wait(self) -> None:
        import asyncio

        while not self.opened:
            await asyncio.sleep(0.05)


def hold(batch: dict[str, Any], gate: Any, first_held: int) -> dict[str, Any]:
    if min(batch["id"]) >= first_held:
        ray.get(gate.wait.remote())
    return batch


def _annotator_pids() -> list[int]:
    import psutil

    found = []
    for p in psutil.Process(os.getpid()).children(recursive=True):  # this test's Ray only
        try:
            if "Annotator" in " ".join(p.cmdline()):
                found.append(p.pid)
        except psutil.Error:
            pass
    return found


def test_actor_killed_mid_job_loses_and_duplicates_nothing(
    cluster: Any, uni_deberta: Checkpoint, model: Any
) -> None:
    from gliner_onnx.ray import annotate

    gate = Gate.remote()
    ds = ray.data.from_items(_rows(), override_num_blocks=12)
    ds = ds.map_batches(
        hold, fn_kwargs={"gate": gate, "first_held": N_ROWS // 4}, batch_size=10, num_cpus=0.25
    )
    ds = annotate(ds, uni_deberta.export_dir, LABELS, actors=1, cpus_per_actor=0.5, batch_size=10)
    rows: list[dict[str, Any]] = []
    killed: list[int] = []
    try:
        for row in ds.iter_rows():
            rows.append(row)
            if not killed:  # the actor has annotated a batch: kill it while the rest wait
                killed = _annotator_pids()
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
                gate.open.remote()
    finally:
        gate.open.remote()
    assert killed, "no annotating actor process found"
    _check_rows(rows, model)


def test_page_and_openapi_under_the_mount(server: str) -> None:
    """Ray Serve mounts the app at the route prefix: the page posts there, and the document
    names the mount as its server (its paths are the app's own)."""
    status, doc = _get(f"{server}/gliner/openapi.json")
    assert status == 200 and doc["servers"] == [{"url": "/gliner"}]
    assert doc["paths"]["/"]["post"]["operationId"] == "predict" and "get" in doc["paths"]["/"]
    with urllib.request.urlopen(f"{server}/gliner", timeout=60) as resp:  # GET at the mount: the page
        assert resp.headers["content-type"].startswith("text/html")
        assert '"api": "/gliner"' in resp.read().decode()
