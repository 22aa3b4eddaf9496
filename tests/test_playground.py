"""The playground page (GET /) in a real headless browser: Debian's chromium driven by Playwright,
against real servers on local ports on the trained uniencoder_span demo export.

Every page runs with a guard that fails the test on any request that would leave the machine. The
tests skip where chromium or Playwright is missing, unless GLINER_ONNX_BROWSER_TESTS=required
(.ci/run sets it): then they fail, so CI never passes without running them.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .test_serve import Server, get, post, start_server

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
LABELS = ["person", "location", "organization"]
# Four scripts; each text has entities, the emoji one has some after astral characters (where
# UTF-16 offsets and the API's code-point offsets differ).
SCRIPTS = {
    "latin": "José Álvarez and Zoë Müller flew from São Paulo to Kraków with Ángel Pérez.",
    "cjk": "習近平 visited 東京 with 李明 and then went to 北京.",
    "arabic": "محمد بن سلمان visited الرياض with أحمد.",
    "emoji": "🎉🇫🇷 Emmanuel Macron 😀 met Olaf Scholz 👩‍🔬 in Berlin 🚀.",
}
KEY = "s3cret-key"
DONE = re.compile(r"^Done: ")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None  # type: ignore[assignment]
    if chromium is None or sync_playwright is None:
        why = "needs Debian's chromium (apt-get install chromium) and playwright (the test extra)"
        if os.environ.get("GLINER_ONNX_BROWSER_TESTS") == "required":
            pytest.fail(f"GLINER_ONNX_BROWSER_TESTS=required, but the browser tests {why}")
        pytest.skip(why)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page whose every request is checked: one to another machine is aborted and fails
    the test, and so does a script error."""
    context = browser.new_context(viewport={"width": 1000, "height": 900}, locale="en-US")
    foreign: list[str] = []
    errors: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(("http:", "https:", "ws:", "wss:")) and urlsplit(url).hostname not in LOCAL_HOSTS:
            foreign.append(url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    pg = context.new_page()
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "status of" not in m.text else None,
    )
    yield pg
    context.close()
    assert not foreign, f"requests left the machine: {foreign}"
    assert not errors, errors


@pytest.fixture(scope="module")
def server(demo_span_export: Path) -> Iterator[Server]:
    s = start_server(demo_span_export)
    yield s
    assert s.stop() == 0, "".join(s.lines)


@pytest.fixture(scope="module")
def guarded(demo_span_export: Path) -> Iterator[Server]:
    """An API key, small limits, one worker and a short queue wait (a busy worker means 503)."""
    limits = ["--max-labels", "4", "--max-text-chars", "9000", "--max-body-bytes", "40000"]
    s = start_server(
        demo_span_export, "--api-key", KEY, *limits, "--workers", "1", "--max-queue-wait-ms", "200"
    )
    yield s
    assert s.stop() == 0, "".join(s.lines)


def run(page: Any, text: str | None = None, labels: str | None = None, typed: bool = False) -> None:
    """Fill the form as a person does and press the run button."""
    area = page.locator("textarea").first
    if text is not None:
        area.fill("")
        area.press_sequentially(text) if typed else area.fill(text)
    if labels is not None:
        page.locator('input[name="labels"]').fill(labels)
    page.locator('button[type="submit"]').click()


def marks(page: Any) -> list[tuple[str, int, int, str]]:
    """(label, start, end, text) of every highlighted span on the page."""
    found = page.eval_on_selector_all(
        "mark", "ms => ms.map(m => [m.dataset.label, m.dataset.start, m.dataset.end, m.textContent])"
    )
    return sorted((label, int(start), int(end), text) for label, start, end, text in found)


def api_entities(url: str, text: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    status, answer, _h = post(f"{url}/gliner", {"text": text, "labels": LABELS}, headers)
    assert status == 200, answer
    return answer["entities"]  # type: ignore[no-any-return]


def utf16_offset(text: str, i: int) -> int:
    return len(text[:i].encode("utf-16-le")) // 2


def test_highlighted_spans_equal_the_api_entities_in_four_scripts(
    page: Any, server: Server, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    expect(page.locator("h1")).to_have_text("gliner-onnx playground")
    for name, text in SCRIPTS.items():
        run(page, text, ", ".join(LABELS), typed=name == "emoji")
        expect(page.locator("#status")).to_have_text(DONE, timeout=60_000)
        assert page.locator("textarea").first.input_value() == text  # typed as it is
        want = api_entities(server.url, text)
        assert len(want) >= 2, (name, want)
        assert marks(page) == sorted((e["label"], e["start"], e["end"], e["text"]) for e in want), name
        assert page.locator("#entities tbody tr").count() == len(want)
        page.screenshot(path=str(tmp_path / f"playground-{name}.png"), full_page=True)
    emoji = api_entities(server.url, SCRIPTS["emoji"])
    assert any(utf16_offset(SCRIPTS["emoji"], e["start"]) != e["start"] for e in emoji)


def test_the_page_works_from_the_keyboard_and_every_field_has_a_label(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    fields = page.locator("textarea, input:visible")
    assert fields.count() >= 5
    for i in range(fields.count()):  # each control is named by a <label> (not colour, not placeholder)
        assert fields.nth(i).evaluate("e => e.labels.length > 0 && e.labels[0].textContent.trim() !== ''")
    page.locator("textarea").first.focus()
    page.keyboard.press("Tab")  # the text, then the labels
    assert page.evaluate("document.activeElement.name") == "labels"
    for _ in range(10):  # on to the run button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.type") == "submit":
            break
    else:
        pytest.fail("the run button is not reachable with Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(DONE, timeout=60_000)
    assert marks(page) and all(label in LABELS for label, *_ in marks(page))
    shot = os.environ.get("GLINER_ONNX_PLAYGROUND_SCREENSHOT")  # docs/playground.png: the page as it opens
    if shot:
        page.screenshot(path=shot, full_page=True)
    page.locator("textarea").first.fill(SCRIPTS["cjk"])
    with page.expect_response(lambda r: r.url.endswith("/gliner")):
        page.keyboard.press("Control+Enter")  # from the text area
    expect(page.locator("#status")).to_have_text(DONE, timeout=60_000)
    expect(page.locator("mark").first).to_have_text("習近平")


def _keep_busy(url: str, stop: threading.Event) -> threading.Thread:
    """Keeps the one worker busy with long texts until `stop` (bounded: at most 20 requests)."""
    body = {"texts": ["Marie Curie was born in Warsaw and worked in Paris. " * 150] * 2, "labels": ["person"]}

    def loop() -> None:
        for _ in range(20):
            if stop.is_set():
                return
            post(f"{url}/gliner", body, {"X-API-Key": KEY}, timeout=120)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def test_api_key_and_errors_show_their_message(page: Any, guarded: Server) -> None:
    from playwright.sync_api import expect

    page.goto(guarded.url + "/")
    key, error = page.locator('input[name="api_key"]'), page.locator("#error")
    expect(key).to_be_visible()

    def shown(status: int) -> str:
        """The server's own message, as the page shows it."""
        with page.expect_response(lambda r: r.url.endswith("/gliner")) as info:
            page.locator('button[type="submit"]').click()
        response = info.value
        assert response.status == status
        expect(error).to_be_visible()
        expect(error).to_have_text(f"Error: HTTP {status}: {response.json()['error']}")
        return str(error.text_content())

    assert "API key" in shown(401)
    key.fill(KEY)
    run(page, SCRIPTS["latin"], ", ".join(LABELS))
    expect(page.locator("#status")).to_have_text(DONE, timeout=60_000)
    expect(error).to_be_hidden()
    assert marks(page) == sorted(
        (e["label"], e["start"], e["end"], e["text"])
        for e in api_entities(guarded.url, SCRIPTS["latin"], {"X-API-Key": KEY})
    )
    page.locator("textarea").first.fill("x" * 45_000)
    assert "max_body_bytes (40000)" in shown(413)
    page.locator("textarea").first.fill(SCRIPTS["latin"])
    page.locator('input[name="labels"]').fill("a, b, c, d, e")
    assert "max_labels (4)" in shown(400)
    page.locator('input[name="labels"]').fill(", ".join(LABELS))
    stop = threading.Event()
    busy = _keep_busy(guarded.url, stop)
    try:
        for _attempt in range(5):  # the worker is busy for seconds: this request waits past 200 ms
            time.sleep(0.5)
            with page.expect_response(lambda r: r.url.endswith("/gliner")) as info:
                page.locator('button[type="submit"]').click()
            if info.value.status == 503:
                message = info.value.json()["error"]
                expect(error).to_have_text(f"Error: HTTP 503: {message}")
                break
            expect(page.locator("#run")).to_be_enabled(timeout=60_000)
        else:
            pytest.fail("no 503 while the only worker was busy")
    finally:
        stop.set()
        busy.join(120)
    assert get(f"{guarded.url}/health")[0] == 200


def test_relations_generated_labels_and_overlaps_render(page: Any) -> None:
    """The parts no demo export shows, on the page as a relex server renders it, answered by a
    stand-in for the server: relation fields and table, decoder labels, overlapping entities in
    rows of their own (each mark still its entity's exact text), and an error that is not JSON."""
    import json

    from playwright.sync_api import expect

    from gliner_onnx.serve.page import _template, render_page

    text = "Tim Cook 👩‍🔬 works for Apple in Cupertino."
    ents = [
        {"start": 0, "end": 8, "text": "Tim Cook", "label": "person", "score": 0.9},
        {"start": 0, "end": 3, "text": "Tim", "label": "person", "score": 0.6},  # nested
        {"start": 23, "end": 28, "text": "Apple", "label": "organization", "score": 0.8},
        {"start": 23, "end": 28, "text": "Apple", "label": "location", "score": 0.55},  # multi-label
        {"start": 26, "end": 41, "text": "le in Cupertino", "label": "location", "score": 0.51},  # crossing
    ]
    for e in ents:
        assert text[e["start"] : e["end"]] == e["text"]
        e["generated_labels"] = [e["label"] + " (generated)"]
    end = {k: ents[0][k] for k in ("start", "end", "text")}
    rel = {"head": {**end, "type": "person", "entity_idx": 0}, "relation": "works for", "score": 0.7}
    rel["tail"] = {"start": 23, "end": 28, "text": "Apple", "type": "organization", "entity_idx": 2}
    config = {"api": "/gliner", "openapi": "/openapi.json", "key": False, "relex": True, "arch": "relex"}
    html = render_page({**config, "limits": {}})
    posted: list[Any] = []
    answers = [
        {"status": 200, "body": json.dumps({"entities": ents, "relations": [rel]})},
        {"status": 502, "body": "<html>Bad gateway</html>", "content_type": "text/html"},
    ]

    def answer(route: Any) -> None:
        posted.append(route.request.post_data_json)
        route.fulfill(**{"content_type": "application/json", **answers[len(posted) - 1]})

    csp = {"Content-Security-Policy": _template()[1]}
    page.route("http://127.0.0.1:9/", lambda r: r.fulfill(body=html, content_type="text/html", headers=csp))
    page.route("http://127.0.0.1:9/gliner", answer)
    page.goto("http://127.0.0.1:9/")
    expect(page.locator('input[name="relations"]')).to_be_visible()
    expect(page.locator('input[name="api_key"]')).to_be_hidden()
    page.locator("textarea").first.fill(text)
    page.locator('input[name="labels"]').fill("person, organization, location")
    page.locator('input[name="relations"]').fill("works for, works for")
    page.locator('input[name="relation_threshold"]').fill("0.4")
    page.get_by_label("Nested entities").check()
    page.locator('button[type="submit"]').click()
    expect(page.locator("#status")).to_have_text(DONE)
    assert posted[0]["relations"] == ["works for", "works for"] and posted[0]["relation_threshold"] == 0.4
    assert posted[0]["flat_ner"] is False and posted[0]["labels"] == ["person", "organization", "location"]
    assert marks(page) == sorted((e["label"], e["start"], e["end"], e["text"]) for e in ents)
    assert page.locator(".doc").count() == 3  # the text, then two rows of overlapping entities
    expect(page.locator("#entities th").last).to_have_text("Generated labels")
    expect(page.locator("#relations-table tbody tr")).to_have_count(1)
    expect(page.locator("#relations-table tbody td").nth(1)).to_have_text("works for")
    page.locator('button[type="submit"]').click()
    expect(page.locator("#error")).to_have_text("Error: HTTP 502: <html>Bad gateway</html>")
