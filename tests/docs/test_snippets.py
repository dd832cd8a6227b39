"""Every ```python snippet of README.md and docs/*.md runs as written (each in a fresh namespace,
the snippets of one page in one fresh process, from a temporary folder).

A snippet that cannot run here says so in a visible line right above it:

    _Snippet not run by the tests: <why>._          (needs a GPU or a download)
    _Snippet run by the slow tests only: <why>._    (minutes on a CPU)

Signature listings are ```text, not ```python."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"^_Snippet (not run by the tests|run by the slow tests only): (.+)\._$")


def snippets(page: Path) -> list[dict]:
    """``{"line", "code", "mark", "why"}`` of every python block of ``page``."""
    lines = page.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            mark = why = None
            k = start - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            m = MARK.match(lines[k].strip()) if k >= 0 else None
            if m:
                mark = "skip" if m.group(1).startswith("not run") else "slow"
                why = m.group(2)
            out.append({"line": start + 1, "code": "\n".join(lines[start + 1 : j]), "mark": mark, "why": why})
            i = j
        i += 1
    return out


RUNNER = r"""
import json, sys, traceback
failures = []
for snip in json.loads(sys.stdin.read()):
    try:
        exec(compile(snip["code"], f"{snip['page']}:{snip['line']}", "exec"), {"__name__": "__snippet__"})
    except BaseException:
        failures.append(f"{snip['page']}:{snip['line']}\n" + traceback.format_exc(limit=3))
print(json.dumps(failures))
"""


def _run(page: Path, snips: list[dict], tmp_path: Path) -> None:
    payload = json.dumps([{**s, "page": page.relative_to(ROOT).as_posix()} for s in snips])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=payload,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    failures = json.loads(r.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(failures)


PAGES_WITH_CODE = [p for p in PAGES if snippets(p)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_snippets_run(page, tmp_path):
    snips = [s for s in snippets(page) if s["mark"] is None]
    if not snips:
        pytest.skip("every snippet of this page is marked")
    _run(page, snips, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_slow_snippets_run(page, tmp_path):
    snips = [s for s in snippets(page) if s["mark"] == "slow"]
    if not snips:
        pytest.skip("no slow snippet on this page")
    _run(page, snips, tmp_path)


def test_marked_snippets_are_few_and_say_why():
    marked = [(p.name, s["line"], s["mark"], s["why"]) for p in PAGES for s in snippets(p) if s["mark"]]
    total = sum(len(snippets(p)) for p in PAGES)
    assert all(why and len(why) > 10 for *_, why in marked), marked
    assert len([m for m in marked if m[2] == "skip"]) <= 3, marked
    assert total >= 8 and len(marked) <= total // 2, (total, marked)


def test_snippet_extraction_sees_marks(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "x\n\n_Snippet not run by the tests: needs a GPU._\n\n```python\nraise SystemExit(1)\n```\n"
        "```python\nx = 1\n```\n"
    )
    got = snippets(page)
    assert [(s["mark"], s["code"]) for s in got] == [("skip", "raise SystemExit(1)"), (None, "x = 1")]
