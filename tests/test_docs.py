"""The README as a user reads it: its quick start runs as written, its set-up commands are the ones
CI runs, and the docs' pages link to pages that exist and say what is rather than how it came to
be."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_front_page_is_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


def test_the_set_up_commands_are_the_ones_ci_installs() -> None:
    """The main job and the test command stay in the README word for word; CONTRIBUTING repeats
    the test command; .ci/run installs the same torch line and the same extras (plus dev)."""
    text = README.read_text(encoding="utf-8")
    main_job, tests = _blocks(_section(text, "Install"), "bash")
    predict = 'gliner-onnx predict out --labels person,location "Angela Merkel visited Paris."'
    assert main_job.strip().endswith(predict)
    assert tests.strip().endswith("python -m pytest -q")
    assert tests in (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    torch_line = "pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    assert torch_line.replace(" -q", "") in tests and torch_line in ci
    extras = re.search(r'-e "\.\[([\w,]+)\]"', tests)
    ci_extras = re.search(r'-e "\.\[([\w,]+)\]"', ci)
    assert extras and ci_extras and set(extras[1].split(",")) | {"dev"} == set(ci_extras[1].split(","))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    heads = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_links_between_pages_resolve() -> None:
    for page in PAGES:
        links = re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text(encoding="utf-8"))
        for target, anchor in links:
            if re.match(r"[a-z]+:", target):
                continue
            path = (page.parent / target) if target else page
            assert path.exists(), f"{page.relative_to(ROOT)}: {target}"
            if anchor and path.suffix == ".md":
                assert anchor in _anchors(path), f"{page.relative_to(ROOT)}: {target}#{anchor}"


HISTORY = re.compile(
    r"\b(today|rerun today|earlier (notes|recipe|version|run)s?|no longer|used to be|was rerun)\b", re.I
)


def test_docs_say_what_is() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        found = [m.group(0) for m in HISTORY.finditer(text)]
        assert not found, f"{page.relative_to(ROOT)}: {found}"


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    """The quick start's shell block, then its Python block, in an empty directory with this
    environment's commands first on PATH; only the port is changed, to a free one."""
    quick = _section(README.read_text(encoding="utf-8"), "Quick start")
    (shell,) = _blocks(quick, "bash")
    (python,) = _blocks(quick, "python")
    port = str(_free_port())
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.run(
        ["bash", "-e", "-c", shell.replace("8000", port)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    predicted = next(line for line in lines if line.startswith('{"text": "Angela Merkel'))
    assert '"text": "Angela Merkel"' in predicted and '"label": "person"' in predicted, predicted
    served = next(line for line in lines if line.startswith('{"entities"'))
    assert '"text":"Tim Cook"' in served and '"label":"person"' in served, served
    assert '"text":"Apple"' in served, served

    run = subprocess.run(
        [sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "'text': 'Angela Merkel'" in run.stdout and "'label': 'person'" in run.stdout, run.stdout
    assert "'text': 'Marie Curie'" in run.stdout, run.stdout
