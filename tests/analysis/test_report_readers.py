"""``steer report``'s verl and TRL readers on logs of real runs: verl's console step lines of a real
2-step ``main_ppo`` run with ``loss_mode=steer`` (``fixtures/verl_steer_2step.log``, see
``fixtures/README.md``), TRL's ``trainer_state.json`` of a real 2-step ``SteerGRPOTrainer`` run (the
captured ``fixtures/trl_steer_2step/`` and one produced live by the same script), and the edge
cases of both formats on small hand-written logs."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import pytest

from steer.analysis.report import (
    TRL_KEYS,
    VERL_KEYS,
    ReportError,
    detect_format,
    make_report,
    parse_verl_line,
    read_run,
)

FIX = Path(__file__).parent / "fixtures"
VERL_LOG = FIX / "verl_steer_2step.log"
TRL_RUN = FIX / "trl_steer_2step"


def _raw_verl_steps() -> list[dict]:
    """An independent parse of the fixture's step lines: plain string splitting."""
    out = []
    for line in VERL_LOG.read_text(errors="replace").splitlines():
        clean = re.sub("\x1b\\[[0-9;]*m", "", line)
        if " step:" not in clean:
            continue
        body = clean.split(" step:", 1)[1]
        parts = body.split(" - ")
        d = {"step": int(parts[0])}
        for item in parts[1:]:
            k, v = item.rsplit(":", 1)
            try:
                d[k] = float(v)
            except ValueError:
                pass
        out.append(d)
    return out


def test_verl_reader_on_a_real_console_log():
    assert detect_format(VERL_LOG) == "verl"
    recs = read_run(VERL_LOG)
    raw = _raw_verl_steps()
    assert [r["step"] for r in recs] == [1, 2] == [d["step"] for d in raw]
    for rec, d in zip(recs, raw):
        assert rec["entropy"] == d["actor/entropy"]
        assert rec["reward"] == d["critic/score/mean"]
        assert rec["response_length"] == d["response_length/mean"]
        assert rec["time/step"] == d["timing_s/step"]
        assert rec["m/weight_mean"] == d["actor/steer/weight_mean"]
        assert math.isclose(rec["m/weight_min"], 0.7, rel_tol=1e-6)  # the run's lambda_min
        shares = [rec[f"m/quadrant/{q}/share"] for q in ("I", "II", "III", "IV")]
        assert shares == [d[f"actor/steer/quadrant/{q}/share"] for q in ("I", "II", "III", "IV")]
        assert math.isclose(sum(shares), 1.0)
        for side in ("low", "high", "dual"):
            assert rec[f"m/clipfrac_{side}"] == d[f"actor/steer/clipfrac_{side}"]
        assert rec["m/clip_by_prob/p0/tokens"] == d["actor/steer/clip_by_prob/p0/tokens"]
        # every steer metric arrives, nothing else of verl's does, and no train accuracy is invented
        n_steer = sum(k.startswith("actor/steer/") for k in d)
        assert n_steer > 50 and sum(k.startswith("m/") for k in rec) == n_steer + 1  # + m/pg_loss
        assert not any(k.startswith(("actor/", "critic/", "timing_s/")) for k in rec)
        assert "acc" not in rec and set(rec) - {"step"} <= set(VERL_KEYS.values()) | {
            k for k in rec if k.startswith("m/")
        }


def test_verl_line_edge_cases(tmp_path):
    line = (
        "step:3 - actor/entropy:0.5 - training/epoch:np.int64(2) - num_turns/mean:np.float64(2.0) - note:abc"
    )
    assert parse_verl_line(line) == {
        "step": 3,
        "actor/entropy": 0.5,
        "training/epoch": 2.0,
        "num_turns/mean": 2.0,
    }
    assert parse_verl_line("(TaskRunner pid=1) Training Progress: 1/2") is None
    assert parse_verl_line("'Final validation metrics: None'") is None
    assert parse_verl_line("(TaskRunner pid=7) step:1 - actor/entropy:nan")["actor/entropy"] != 0.5
    log = tmp_path / "run.log"
    log.write_text(
        "some banner\n"
        "(TaskRunnerV1 pid=9) step:1 - actor/entropy:0.9 - actor/pg_clipfrac:0.3 - actor/pg_clipfrac_lower:0.01\n"
        "step:2 - actor/entropy:0.8 - actor/pg_clipfrac_lower:0.02\n"
        "step:2 - actor/entropy:0.7 - actor/pg_clipfrac_lower:0.04\n"  # a resumed run prints step 2 again
    )
    recs = read_run(log)
    assert [(r["step"], r["entropy"]) for r in recs] == [(1, 0.9), (2, 0.7)]
    # verl's own loss: its dual-clip share is the core's clipfrac_dual; lower+upper together is left out
    assert recs[0]["m/clipfrac_dual"] == 0.01 and recs[1]["m/clipfrac_dual"] == 0.04
    assert not any("pg_clipfrac" in k or k == "m/clipfrac" for r in recs for k in r)
    empty = tmp_path / "empty.log"
    empty.write_text("nothing here\n")
    with pytest.raises(ReportError, match="no verl step lines"):
        read_run(empty, "verl")
    with pytest.raises(ReportError, match="cannot tell the log format"):
        read_run(empty)
    with pytest.raises(ReportError, match="console log file"):
        read_run(tmp_path, "verl")


def _load_capture():
    spec = importlib.util.spec_from_file_location("capture_trl_log", FIX / "capture_trl_log.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check_trl(recs: list[dict], hist: list[dict]) -> None:
    train = [h for h in hist if "entropy" in h]
    assert [r["step"] for r in recs] == [h["step"] for h in train] == [1, 2]  # the summary entry is left out
    for rec, h in zip(recs, train):
        assert rec["entropy"] == h["entropy"] and rec["reward"] == h["reward"]
        assert rec["response_length"] == h["completions/mean_length"]
        assert rec["m/weight_mean"] == h["steer/weight_mean"]
        assert math.isclose(rec["m/weight_min"], 0.7, rel_tol=1e-6)  # steer's default lambda_min
        assert 0 < rec["m/weight_mean"] < 1
        shares = [rec[f"m/quadrant/{q}/share"] for q in ("I", "II", "III", "IV")]
        assert math.isclose(sum(shares), 1.0)
        for side in ("low", "high", "dual"):
            assert rec[f"m/clipfrac_{side}"] == h[f"steer/clipfrac_{side}"]
        assert rec["m/steer/omega_max"] == h["steer/omega_max"]
        assert "acc" not in rec
        assert not any(k.startswith(("clip_ratio/", "rewards/", "completions/", "steer/")) for k in rec)
        assert set(rec) - {"step"} <= set(TRL_KEYS.values()) | {k for k in rec if k.startswith("m/")}


def test_trl_reader_on_a_captured_real_run():
    state = json.loads((TRL_RUN / "trainer_state.json").read_text())
    assert detect_format(TRL_RUN) == "trl" and detect_format(TRL_RUN / "trainer_state.json") == "trl"
    _check_trl(read_run(TRL_RUN), state["log_history"])


def test_trl_reader_on_a_live_two_step_run(tmp_path):
    pytest.importorskip("trl")
    f = _load_capture().capture(tmp_path / "live")
    _check_trl(read_run(f.parent), json.loads(f.read_text())["log_history"])


def test_trl_edge_cases(tmp_path):
    out = tmp_path / "out"
    for step in (1, 10, 2):
        d = out / f"checkpoint-{step}"
        d.mkdir(parents=True)
        hist = [
            {
                "step": s,
                "loss": 0.1,
                "entropy": 1.0 - 0.01 * s,
                "reward": 0.5,
                "clip_ratio/low_mean": 0.02,
                "clip_ratio/high_mean": 0.03,
                "epoch": 0.1,
            }
            for s in range(1, step + 1)
        ] + [{"step": step, "eval_reward": 0.4, "eval_loss": 1.0}, {"step": step, "train_runtime": 1.0}]
        (d / "trainer_state.json").write_text(json.dumps({"log_history": hist}))
    assert detect_format(out) == "trl"
    recs = read_run(out)  # the latest checkpoint's history (checkpoint-10, not -2)
    assert [r["step"] for r in recs] == list(range(1, 11))
    # a stock GRPOTrainer: TRL's own clip shares have the core's meaning
    assert recs[0]["m/clipfrac_low"] == 0.02 and recs[0]["m/clipfrac_high"] == 0.03
    assert "m/clipfrac_dual" not in recs[0]
    bad = tmp_path / "bad" / "trainer_state.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="not JSON"):
        read_run(bad)
    bad.write_text(json.dumps({"global_step": 3}))
    with pytest.raises(ReportError, match="no 'log_history'"):
        read_run(bad)
    bad.write_text(json.dumps({"log_history": [{"step": 1, "train_runtime": 2.0}]}))
    with pytest.raises(ReportError, match="no training log entries"):
        read_run(bad)
    none = tmp_path / "none"
    none.mkdir()
    with pytest.raises(ReportError, match="no trainer_state.json"):
        read_run(none, "trl")


def test_report_over_steer_verl_and_trl_runs(tmp_path):
    steer_run = tmp_path / "ours"
    steer_run.mkdir()
    recs = [
        {
            "step": s,
            "entropy": 1.0 - 0.1 * s,
            "reward": 0.2 * s,
            "acc": 0.1 * s,
            "m/weight_mean": 0.9,
            "m/weight_min": 0.7,
            "m/clipfrac_low": 0.01,
            "m/quadrant/I/share": 0.25,
            "m/quadrant/II/share": 0.25,
            "m/quadrant/III/share": 0.25,
            "m/quadrant/IV/share": 0.25,
        }
        for s in (1, 2, 3)
    ]
    (steer_run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = make_report([steer_run, VERL_LOG, TRL_RUN], tmp_path / "rep", labels=["steer", "verl", "trl"])
    assert {"entropy", "reward", "quadrants", "weights", "clip"} <= set(res["images"])
    s = res["summaries"]
    assert s["verl"]["steps"] == 2 and s["verl"]["entropy_first"] == 5.5625
    assert s["trl"]["steps"] == 2 and math.isclose(s["trl"]["weight_min_overall"], 0.7, rel_tol=1e-6)
    assert "<th>verl</th>" in res["html"].read_text()
