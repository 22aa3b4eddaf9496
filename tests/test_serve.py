"""The embedded HTTP server (`gliner-onnx serve`, no Ray): real servers on free local ports,
started through the CLI as subprocesses, on the tiny DeBERTa span export."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import LABELS, TEXTS, Checkpoint

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")

THRESHOLD = 0.3
LIMITS = ["--max-text-chars", "2000", "--max-labels", "8", "--max-texts", "4", "--max-body-bytes", "65536"]


def same_entities(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    key = [(e["start"], e["end"], e["text"], e["label"]) for e in got]
    if key != [(e["start"], e["end"], e["text"], e["label"]) for e in want]:
        return False
    return all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(got, want))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)


def start_server(export_dir: Any, *options: str, env: dict[str, str] | None = None) -> Server:
    port = _free_port()
    cmd = [sys.executable, "-m", "gliner_onnx.cli", "serve", str(export_dir), "--port", str(port), *options]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    server = Server(proc, f"http://127.0.0.1:{port}")
    ready = threading.Event()

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            server.lines.append(line)
            if "Ctrl-C stops" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120):
        server.stop(signal.SIGKILL)
        raise AssertionError("the server did not start:\n" + "".join(server.lines))
    return server


def post(
    url: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as e:
        raw = e.read()
        headers = {k.lower(): v for k, v in e.headers.items()}
        return e.code, json.loads(raw) if raw.startswith(b"{") else {"raw": raw.decode()}, headers


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.fixture(scope="module")
def model(uni_deberta: Checkpoint) -> Any:
    from gliner_onnx import GLiNER

    return GLiNER.from_pretrained(uni_deberta.export_dir)


@pytest.fixture(scope="module")
def server(uni_deberta: Checkpoint) -> Iterator[Server]:
    s = start_server(uni_deberta.export_dir, *LIMITS)
    yield s
    assert s.stop() == 0, "".join(s.lines)


def _want(model: Any, body: dict[str, Any], text: str) -> list[dict[str, Any]]:
    return model.inference(  # type: ignore[no-any-return]
        [text],
        body["labels"],
        threshold=body.get("threshold", 0.5),
        flat_ner=body.get("flat_ner", True),
        multi_label=body.get("multi_label", False),
    )[0]


def test_gliner_client_against_the_server(server: Server, model: Any) -> None:
    from gliner.serve import GLiNERClient

    client = GLiNERClient(base_url=server.url, route_prefix="/gliner")
    got = client.predict(TEXTS, labels=LABELS, threshold=THRESHOLD)
    assert isinstance(got, list) and len(got) == len(TEXTS)
    for text, answer in zip(TEXTS, got):
        assert set(answer) == {"entities"}
        assert same_entities(answer["entities"], model.inference([text], LABELS, threshold=THRESHOLD)[0])
    one = client.predict(TEXTS[0], labels=LABELS)
    assert isinstance(one, dict) and same_entities(one["entities"], model.inference(TEXTS[0], LABELS)[0])


def test_served_answers_equal_in_process_single_and_batch_form(server: Server, model: Any) -> None:
    bodies: list[dict[str, Any]] = [{"text": t, "labels": LABELS, "threshold": THRESHOLD} for t in TEXTS]
    bodies += [
        {"text": TEXTS[0], "labels": LABELS[:2], "flat_ner": False, "multi_label": True, "threshold": 0.2},
        {"text": TEXTS[1], "labels": {"person": "person", "place": "location"}, "threshold": 0.1},
    ]
    with ThreadPoolExecutor(len(bodies)) as pool:  # concurrent: the worker batches them
        answers = list(pool.map(lambda b: post(f"{server.url}/gliner", b), bodies))
    for b, (status, answer, _h) in zip(bodies, answers):
        assert status == 200 and same_entities(answer["entities"], _want(model, b, b["text"]))
    batch = {"texts": TEXTS[:4], "labels": LABELS, "threshold": THRESHOLD, "flat_ner": False}
    status, answer, _h = post(f"{server.url}/gliner", batch)
    assert status == 200 and len(answer["results"]) == 4
    for text, one in zip(TEXTS, answer["results"]):
        assert same_entities(one["entities"], _want(model, batch, text))


def test_health_ready_metrics_and_unknown_routes(server: Server) -> None:
    for path in ("/health", "/gliner/health"):
        status, body, _h = get(server.url + path)
        assert status == 200 and json.loads(body)["arch"] == "uniencoder_span"
        assert json.loads(body)["spinning"] is False
    status, body, _h = get(server.url + "/ready")
    assert (status, json.loads(body)) == (200, {"status": "ready"})
    post(f"{server.url}/gliner", {"text": TEXTS[0], "labels": LABELS})
    status, body, headers = get(server.url + "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in (
        'gliner_onnx_requests_total{route="/gliner",status="200"}',
        "gliner_onnx_request_seconds_bucket",
        "gliner_onnx_in_flight_requests",
        "gliner_onnx_batch_size_bucket",
        "gliner_onnx_model_load_seconds",
    ):
        assert name in text, name
    status, body, _h = get(server.url + "/nope")
    assert status == 404 and json.loads(body)["error"]
    req = urllib.request.Request(f"{server.url}/gliner", data=b"{}", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 405


def test_every_limit_is_refused_with_its_status_and_name(server: Server, uni_deberta: Checkpoint) -> None:
    url = f"{server.url}/gliner"
    cases = [
        ({"text": "x" * 2001, "labels": LABELS}, "text", "max_text_chars"),
        ({"text": "Paris", "labels": [f"l{i}" for i in range(9)]}, "labels", "max_labels"),
        ({"texts": ["a"] * 5, "labels": LABELS}, "texts", "max_texts"),
        ({"texts": ["a", "x" * 2001], "labels": LABELS}, "texts[1]", "max_text_chars"),
        ({"texts": [], "labels": LABELS}, "texts", "non-empty"),
        ({"text": "a", "texts": ["a"], "labels": LABELS}, "texts", "not both"),
    ]
    for body, field_name, words in cases:
        status, answer, _h = post(url, body)
        assert (status, answer["field"]) == (400, field_name) and words in answer["error"], answer
    status, answer, _h = post(url, {"text": "x" * 70_000, "labels": LABELS})  # declared length over 64 KiB
    assert status == 413 and "max_body_bytes" in answer["error"]
    assert (
        _chunked_status(url, b'{"text": "' + b"x" * 70_000 + b'", "labels": ["a"]}') == 413
    )  # no length given
    assert post(url, {"text": TEXTS[0], "labels": LABELS})[0] == 200  # still serving
    for _status, body, _h in (post(url, {"text": "x" * 2001, "labels": LABELS}), post(url, b"{oops")):
        assert str(uni_deberta.export_dir) not in json.dumps(body) and "Traceback" not in json.dumps(body)


def _chunked_status(url: str, data: bytes) -> int:
    import http.client

    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", "/gliner")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for i in range(0, len(data), 8192):
                chunk = data[i : i + 8192]
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end of the body
        return conn.getresponse().status
    finally:
        conn.close()


BAD_BODIES = [
    (b"{not json", "body"),
    (b"[1, 2]", "body"),
    (b'{"labels": ["person"]}', "text"),
    (b'{"text": 42, "labels": ["person"]}', "text"),
    (b'{"text": "Paris"}', "labels"),
    (b'{"text": "Paris", "labels": []}', "labels"),
    (b'{"text": "Paris", "labels": ["person"], "threshold": 1.5}', "threshold"),
    (b'{"text": "Paris", "labels": ["person"], "flat_ner": "yes"}', "flat_ner"),
    (b'{"text": "Paris", "labels": ["person"], "relations": ["born in"]}', "relations"),
    (b'{"text": "\\ud800", "labels": ["person"]}', "text"),
    (b'{"text": "Paris", "labels": ["person"], "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "body"),
    (b'{"text": "Paris", "labels": ["person"], "threshold": ' + b"1" * 5000 + b"}", "body"),
]


def test_bad_requests_get_400_naming_the_field(server: Server, model: Any) -> None:
    url = f"{server.url}/gliner"
    for body, field_name in BAD_BODIES:
        status, answer, _h = post(url, body)
        assert (status, answer.get("field")) == (400, field_name), (body[:60], answer)
    status, answer, _h = post(url, {"text": TEXTS[0], "labels": ["person", model.manifest.ent_token]})
    assert status == 400 and model.manifest.ent_token in answer["error"]  # refused by the runtime, alone
    assert post(url, {"text": TEXTS[0], "labels": LABELS})[0] == 200


def test_fuzzed_payloads_never_get_a_5xx(server: Server) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    values = st.recursive(
        scalars,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=8,
    )
    keys = st.sampled_from(
        [
            "text",
            "texts",
            "labels",
            "threshold",
            "flat_ner",
            "multi_label",
            "relations",
            "relation_threshold",
            "adapter_id",
            "other",
        ]
    )
    objects = st.dictionaries(keys, values | st.lists(st.text(max_size=20), max_size=5), max_size=6)
    plausible = st.fixed_dictionaries(
        {"text": st.text(max_size=200), "labels": st.lists(st.text(max_size=12), min_size=1, max_size=5)},
        optional={"threshold": st.floats(-1, 2)},
    )
    bodies = (
        objects.map(lambda o: json.dumps(o).encode())
        | plausible.map(lambda o: json.dumps(o).encode())
        | st.binary(max_size=200)
    )

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(bodies)
    def check(body: bytes) -> None:
        status, answer, _h = post(f"{server.url}/gliner", body)
        assert status in (200, 400), (status, body[:100], answer)

    check()
    assert (
        server.proc.poll() is None
        and post(f"{server.url}/gliner", {"text": "Paris", "labels": ["city"]})[0] == 200
    )


def test_overload_answers_only_200_or_503_with_bounded_memory(server: Server) -> None:
    import psutil

    url, body = f"{server.url}/gliner", {"text": TEXTS[2], "labels": LABELS}
    rss0 = psutil.Process(server.proc.pid).memory_info().rss
    with ThreadPoolExecutor(64) as pool:  # 64 clients at once against 1 worker, a queue of 16
        results = list(pool.map(lambda _i: post(url, body), range(256)))
    statuses = {s for s, _a, _h in results}
    assert statuses <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    assert all(h.get("retry-after") == "1" for s, _a, h in results if s == 503)
    assert psutil.Process(server.proc.pid).memory_info().rss < rss0 + 200 * 2**20
    assert post(url, body)[0] == 200


@pytest.fixture(scope="module")
def guarded(uni_deberta: Checkpoint) -> Iterator[Server]:
    s = start_server(
        uni_deberta.export_dir,
        "--cors-origin",
        "http://app.example",
        "--access-log",
        env={"GLINER_ONNX_API_KEY": "s3cret"},
    )
    yield s
    assert s.stop(signal.SIGINT) == 0, "".join(s.lines)


def test_api_key_cors_and_access_log(guarded: Server, server: Server) -> None:
    url, body = f"{guarded.url}/gliner", {"text": TEXTS[0], "labels": LABELS}
    assert post(url, body)[0] == 401
    status, answer, headers = post(url, body, {"X-API-Key": "s3cre"})
    assert status == 401 and headers.get("www-authenticate") == "Bearer" and answer["error"]
    assert post(url, body, {"X-API-Key": "s3cret"})[0] == 200
    assert post(url, body, {"Authorization": "Bearer s3cret"})[0] == 200
    assert get(f"{guarded.url}/health")[0] == 200 and get(f"{guarded.url}/metrics")[0] == 401
    assert get(f"{guarded.url}/metrics", {"X-API-Key": "s3cret"})[0] == 200
    _s, _a, headers = post(url, body, {"X-API-Key": "s3cret", "Origin": "http://app.example"})
    assert headers.get("access-control-allow-origin") == "http://app.example"
    _s, _a, headers = post(url, body, {"X-API-Key": "s3cret", "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in headers
    _s, _a, headers = post(
        f"{server.url}/gliner", body, {"Origin": "http://app.example"}
    )  # CORS off by default
    assert "access-control-allow-origin" not in headers
    deadline = time.time() + 10
    while time.time() < deadline and not any('"status": 200' in line for line in guarded.lines):
        time.sleep(0.1)
    log = [json.loads(line) for line in guarded.lines if line.startswith("{")]
    assert {(e["method"], e["path"], e["status"]) for e in log} >= {
        ("POST", "/gliner", 401),
        ("POST", "/gliner", 200),
    }
    assert not any(line.startswith("{") for line in server.lines)  # off by default


def test_spinning_threads_are_opt_in(uni_deberta: Checkpoint, model: Any) -> None:
    s = start_server(uni_deberta.export_dir, "--workers", "1", "--threads", "2", "--spinning")
    try:
        health = json.loads(get(f"{s.url}/health")[1])
        assert health["spinning"] is True and health["threads"] == 2  # as ONNX Runtime holds it
        assert "2 thread(s) spinning," in "".join(s.lines)
        body: dict[str, Any] = {"text": TEXTS[0], "labels": LABELS, "threshold": THRESHOLD}
        status, answer, _h = post(f"{s.url}/gliner", body)
        assert status == 200 and same_entities(answer["entities"], _want(model, body, body["text"]))
    finally:
        assert s.stop() == 0


def test_per_request_time_limit_gives_504(uni_deberta: Checkpoint) -> None:
    s = start_server(uni_deberta.export_dir, "--request-timeout-s", "0.001")
    try:
        status, answer, _h = post(f"{s.url}/gliner", {"text": TEXTS[3] * 20, "labels": LABELS})
        assert status == 504 and "request_timeout_s" in answer["error"]
        assert get(f"{s.url}/health")[0] == 200
    finally:
        assert s.stop() == 0


def test_sigterm_finishes_requests_in_flight_then_exits_0(uni_deberta: Checkpoint) -> None:
    import psutil

    s = start_server(
        uni_deberta.export_dir,
        "--threads",
        "1",
        "--max-batch-size",
        "1",
        "--max-queue",
        "64",
        "--shed-batch-size",
        "0",
    )
    body = {"texts": [TEXTS[3] * 3] * 4, "labels": LABELS}
    assert {
        c.laddr.ip for c in psutil.Process(s.proc.pid).net_connections("tcp") if c.status == "LISTEN"
    } == {"127.0.0.1"}
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(post, f"{s.url}/gliner", body) for _ in range(6)]
        deadline = time.time() + 30
        while (
            b"gliner_onnx_in_flight_requests 6.0" not in get(f"{s.url}/metrics")[1] and time.time() < deadline
        ):
            time.sleep(0.02)  # until all six are in flight, most still queued
        s.proc.send_signal(signal.SIGTERM)
        results = [f.result() for f in futures]
    assert [r[0] for r in results] == [200] * 6 and all(len(r[1]["results"]) == 4 for r in results)
    assert s.proc.wait(60) == 0, "".join(s.lines)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1])), timeout=2).close()


def test_cli_and_serve_facade_load_no_server_library() -> None:
    code = "import gliner_onnx.cli, gliner_onnx.serve\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "gliner_onnx.serve" in out
    assert not {m for m in out if m.split(".")[0] in ("uvicorn", "starlette", "prometheus_client", "ray")}


def test_options_of_the_other_host_are_refused(uni_deberta: Checkpoint) -> None:
    # Ray Serve reads none of the embedded server's workers, limits and connection options, and
    # the embedded server no Ray Serve options: given to the other host they would be ignored.
    serve = [sys.executable, "-m", "gliner_onnx.cli", "serve", str(uni_deberta.export_dir)]
    for options, said in (
        (["--ray", "--spinning", "--threads", "2"], "--threads, --spinning: options of the embedded server"),
        (["--address", "auto", "--max-connections", "9"], "--max-connections: options of the embedded"),
        (["--replicas", "2"], "--replicas: options of Ray Serve, which the embedded server would ignore"),
    ):
        proc = subprocess.run([*serve, *options], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and said in proc.stderr, (options, proc.stderr)


def test_host_only_options_cover_their_hosts_groups() -> None:
    from gliner_onnx.cli import build_parser
    from gliner_onnx.serve.command import EMBEDDED_ONLY, RAY_ONLY

    # argparse keeps a parser's groups private: the test reads them, the code lists its options
    subparsers = (a.choices for a in build_parser()._actions if isinstance(a.choices, dict))
    serve = next(s["serve"] for s in subparsers if "serve" in s)
    groups = {g.title or "": {a.dest for a in g._group_actions} for g in serve._action_groups}
    embedded = set().union(*(dests for title, dests in groups.items() if "(embedded server)" in title))
    assert embedded and embedded <= set(EMBEDDED_ONLY)
    assert set(EMBEDDED_ONLY) - embedded == {"cors_origin", "access_log"}  # the HTTP group's two
    assert groups["Ray Serve (--ray; the ray extra)"] - {"ray", "address"} == set(RAY_ONLY)
