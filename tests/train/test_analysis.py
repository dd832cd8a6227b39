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
