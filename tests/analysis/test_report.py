"""``steer report``: the per-format readers, the plots and the self-contained HTML page, on synthetic
records and on real trainer runs; the page rendered in a headless browser (skipped without one)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import pytest

from steer.analysis.report import READERS, ReportError, make_report, read_run


def _records(h0: float, h1: float, steps: int = 12) -> list[dict]:
    recs = [
        {"step": 0, "heldout/acc": 0.3, "heldout/acc_se": 0.05, "heldout/pass@1": 0.3, "heldout/pass@4": 0.5}
    ]
    for i in range(1, steps + 1):
        h = h0 + (h1 - h0) * i / steps
        r = {
            "step": i,
            "entropy": h,
            "acc": 0.4 + 0.01 * i,
            "response_length": 10.0,
            "m/weight_mean": 1.0 - 0.001 * i,
            "m/weight_min": 0.7,
            "m/clipfrac_low": 0.01,
            "m/clipfrac_high": 0.02 * (h1 > h0),
            "time/step": 1.0,
        }
        for q, share in zip(("I", "II", "III", "IV"), (0.5, 0.1, 0.1, 0.3)):
            r[f"m/quadrant/{q}/share"] = share
        for k in range(10):
            r[f"m/clip_by_prob/p{k}/low"] = float(k < 3)
            r[f"m/clip_by_prob/p{k}/high"] = float(k == 1)
        recs.append(r)
    recs[-1].update(
        {"heldout/acc": 0.35, "heldout/acc_se": 0.05, "heldout/pass@1": 0.35, "heldout/pass@4": 0.6}
    )
    return recs


def _write_run(d, recs, torn: bool = False):
    d.mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in recs)
    if torn:
        text += '{"step": 99, "entro'
    (d / "metrics.jsonl").write_text(text)
    return d


def test_read_steer_format(tmp_path):
    recs = _records(1.0, 0.5)
    recs[3]["loss"] = "nan"  # how the trainer stores a non-finite value
    d = _write_run(tmp_path / "a", recs, torn=True)
    got = read_run(d)
    assert len(got) == len(recs) and math.isnan(got[3]["loss"])  # torn last line dropped
    again = read_run(d / "metrics.jsonl")
    assert [r["step"] for r in again] == [r["step"] for r in got] and math.isnan(again[3]["loss"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ReportError, match="line 2 is not JSON"):
        read_run(bad)
    (bad / "metrics.jsonl").write_text('{"nostep": 1}\n{"step": 2}\n')
    with pytest.raises(ReportError, match="line 1 is not a metrics record"):
        read_run(bad)
    (bad / "metrics.jsonl").write_text("")
    with pytest.raises(ReportError, match="no records"):
        read_run(bad)
    with pytest.raises(ReportError, match="no such file"):
        read_run(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="cannot tell the log format"):
        read_run(empty)


def test_formats(tmp_path):
    assert set(READERS) == {"steer", "verl", "trl"}  # verl and trl: tests/analysis/test_report_readers.py
    with pytest.raises(ReportError, match="unknown format"):
        read_run(tmp_path, "wandb")


def test_report_files_and_self_contained_html(tmp_path):
    a = _write_run(tmp_path / "runs" / "grpo", _records(1.0, 0.4))
    b = _write_run(tmp_path / "runs" / "steer", _records(1.0, 0.8))
    res = make_report([a, b], tmp_path / "out", title="two runs")
    assert set(res["images"]) == {
        "entropy",
        "accuracy",
        "passk_steps",
        "passk",
        "quadrants",
        "weights",
        "clip",
        "clip_by_prob",
    }
    for p in res["images"].values():
        assert p.exists() and p.stat().st_size > 2000
    html = res["html"].read_text()
    # self-contained: every image is embedded, nothing is fetched from elsewhere
    assert html.count("src='data:image/png;base64,") == len(res["images"])
    assert not re.search(r"(src|href)=['\"](?!data:)", html)
    assert "<th>grpo</th>" in html and "<th>steer</th>" in html
    md = res["md"].read_text()
    # first / last 10% of 12 steps = one step each: 0.95 -> 0.4 and 0.983 -> 0.8
    g, st = 100 * (0.4 / 0.95 - 1), 100 * (0.8 / (1 - 0.2 / 12) - 1)
    assert f"| entropy change (%) | {g:.1f} | {st:.1f} |" in md
    s = res["summaries"]
    assert math.isclose(s["grpo"]["entropy_last"], 0.4) and s["steer"]["end/acc"] == 0.35
    # labels: the directory names, or the two last path parts when those collide
    c = _write_run(tmp_path / "x" / "seed0", _records(1.0, 0.5))
    d = _write_run(tmp_path / "y" / "seed0", _records(1.0, 0.5))
    res2 = make_report([c, d], tmp_path / "out2")
    assert set(res2["summaries"]) == {"x/seed0", "y/seed0"}
    with pytest.raises(ReportError, match="2 runs"):
        make_report([c, d], tmp_path / "out3", labels=["one"])
    with pytest.raises(ReportError, match="at least one run"):
        make_report([], tmp_path / "out4")


def test_report_cli(tmp_path, capsys):
    from steer.cli import main

    a = _write_run(tmp_path / "a", _records(1.0, 0.4))
    assert main(["report", str(a), "--out", str(tmp_path / "o"), "--labels", "GRPO"]) == 0
    assert (tmp_path / "o" / "report.html").exists()
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    # a steer run read as verl: no step lines, a clear error
    assert main(["report", str(a / "metrics.jsonl"), "--format", "verl", "--out", str(tmp_path / "o")]) == 2
    assert "no verl step lines" in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, analysis_ws_cache):
    """Two real trainer runs (GRPO and entropy advantage, the --quick budget of steer reproduce)."""
    from steer.analysis.reproduce import run_claim

    out = tmp_path_factory.mktemp("real")
    run_claim(
        "entropy-advantage",
        out,
        quick=True,
        seeds=[0],
        jobs=1,
        overrides=[f"warm_start.cache_dir={analysis_ws_cache}", "eval.at_end=true", "trainer.steps=3"],
        log=lambda m: None,
    )
    return [out / "entropy-advantage" / "grpo" / "seed0", out / "entropy-advantage" / "entropy_adv" / "seed0"]


def test_report_on_real_runs(real_runs, tmp_path):
    res = make_report(real_runs, tmp_path / "rep", labels=["grpo", "entropy_adv"])
    # (no quadrant shares: the micro policy of the quick budget solves nothing, every advantage is 0)
    for name in ("entropy", "accuracy", "passk", "weights", "clip", "clip_by_prob"):
        assert name in res["images"], name
    s = res["summaries"]
    assert s["grpo"]["steps"] == 3 and "end/acc" in s["grpo"] and "end/pass@4" in s["entropy_adv"]


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_a_headless_browser(tmp_path):
    """Screenshot of report.html in headless Chromium: the plots must be visible (the pixels of
    matplotlib's first two line colours appear in the rendered page)."""
    browser = _browser()
    if browser is None:
        pytest.skip("no headless browser installed (Debian: apt-get install -y chromium)")
    a = _write_run(tmp_path / "runs" / "grpo", _records(1.0, 0.4))
    b = _write_run(tmp_path / "runs" / "steer", _records(1.0, 0.8))
    res = make_report([a, b], tmp_path / "out")
    shot = tmp_path / "shot.png"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1200,2600",
        f"--screenshot={shot}",
        res["html"].resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    import matplotlib.image as mpimg
    import numpy as np

    img = (mpimg.imread(shot)[..., :3] * 255).astype(int)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1000

    def count(rgb):
        return int((np.abs(img - np.array(rgb)).sum(-1) < 40).sum())

    blue, orange = count((31, 119, 180)), count((255, 127, 14))
    assert blue > 500 and orange > 500, (blue, orange)
    white = count((255, 255, 255))
    assert white < img.shape[0] * img.shape[1] * 0.97  # not a blank page
    keep = tmp_path.parent / "report_screenshot.png"
    shutil.copy(shot, keep)
