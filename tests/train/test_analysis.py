"""Summaries state the measured outcome, whichever way it goes."""

from __future__ import annotations

from steer.analysis.summary import summarize_run, verdict


def _run(h0, h1, acc_end, se=0.01, steps=20):
    recs = [
        {
            "step": 0,
            "heldout/acc": 0.3,
            "heldout/acc_se": se,
            "heldout/diversity": 2.0,
            "heldout/pass@16": 0.8,
        }
    ]
    for i in range(steps):
        h = h0 + (h1 - h0) * i / (steps - 1)
        recs.append({"step": i + 1, "entropy": h, "acc": 0.3, "response_length": 10.0, "time/step": 1.0})
    recs[-1].update(
        {"heldout/acc": acc_end, "heldout/acc_se": se, "heldout/diversity": 1.5, "heldout/pass@16": 0.7}
    )
    return recs


def test_verdict_reports_a_loss_plainly():
    s = {"grpo": summarize_run(_run(1.0, 0.4, 0.50)), "steer": summarize_run(_run(1.0, 0.8, 0.40))}
    lines = " ".join(verdict(s))
    assert "declined" in lines and "kept more entropy" in lines
    assert "STEER does NOT beat GRPO" in lines and "0.500" in lines and "0.400" in lines


def test_verdict_within_noise_and_win():
    s = {
        "grpo": summarize_run(_run(1.0, 0.5, 0.50, se=0.05)),
        "steer": summarize_run(_run(1.0, 0.5, 0.52, se=0.05)),
    }
    assert "no measurable winner" in " ".join(verdict(s))
    s = {"grpo": summarize_run(_run(1.0, 0.5, 0.40)), "steer": summarize_run(_run(1.0, 0.5, 0.60))}
    assert "STEER is better by +0.200" in " ".join(verdict(s))
    s = {
        "grpo": summarize_run(_run(1.0, 0.5, 0.0, se=0.0)),
        "steer": summarize_run(_run(1.0, 0.5, 0.0, se=0.0)),
    }
    assert "identical" in " ".join(verdict(s))


def test_summarize_run_numbers():
    d = summarize_run(_run(2.0, 1.0, 0.5))
    assert d["steps"] == 20 and d["entropy_first"] == 2.0 and d["entropy_last"] == 1.0
    assert d["entropy_change_pct"] < -40 and d["start/acc"] == 0.3 and d["end/acc"] == 0.5
    assert d["wall_s"] == 20.0


def test_write_summary_basename_and_default(tmp_path):
    from steer.analysis.plots import plot_lines
    from steer.analysis.summary import write_summary

    runs = {"grpo": _run(1.0, 0.4, 0.5), "steer": _run(1.0, 0.8, 0.4)}
    img = plot_lines(runs, ["entropy"], tmp_path / "e.png", title="entropy", ylabel="nats")
    s = {k: summarize_run(v) for k, v in runs.items()}
    md, html = write_summary(s, {"entropy": img}, tmp_path, title="t")
    assert md.name == "summary.md" and html.name == "summary.html"
    md2, html2 = write_summary(s, {"entropy": img}, tmp_path, title="t", basename="report")
    assert md2.name == "report.md" and "data:image/png;base64," in html2.read_text()


def test_plot_arm_bands(tmp_path):
    from steer.analysis.plots import plot_arm_bands

    groups = {"a": {0: _run(1.0, 0.5, 0.5), 1: _run(1.0, 0.6, 0.5)}, "b": {0: _run(1.0, 0.9, 0.5)}}
    p = plot_arm_bands(groups, "entropy", tmp_path / "bands.png", title="entropy")
    assert p.exists() and p.stat().st_size > 2000
    empty = plot_arm_bands(groups, "no/such/key", tmp_path / "none.png", title="none")
    assert empty.exists()
