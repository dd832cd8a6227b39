"""``steer cause-check``: one state per (size, seed), every weighting from the same parameters and
optimiser state; the result files, GRPO's zero weight effect, and restoring the state exactly."""

from __future__ import annotations

import json
import math

import pytest

from steer.analysis import cause_check as C
from steer.analysis import reproduce as R
from steer.train.config import load_config
from steer.train.tasks import build_task

from .helpers import CoinTask


def test_cause_check_quick(tmp_path, analysis_ws_cache):
    cfg = load_config("testbed", [])
    res = C.run_cause_check(
        tmp_path,
        sizes=["micro"],
        seeds=[0],
        warm_steps=1,
        quick=True,
        # the micro warm-start of the reproduce --quick budget (shared cache)
        overrides=[
            f"warm_start.cache_dir={analysis_ws_cache}",
            *[o for o in R.QUICK_BUDGET if o.startswith("warm_start.")],
            "rollout.max_new_tokens=12",
        ],
        log=lambda m: None,
        task=CoinTask(build_task(cfg.task)),
    )
    rows = res["rows"]
    assert [r["method"] for r in rows] == list(C.METHODS)
    # the same state for every weighting: the unweighted prediction is the same (the first
    # mini-batch of a step has ratio 1, so no surrogate clips differently)
    base = rows[0]["pred_unweighted"]
    for r in rows:
        assert r["pred_unweighted"] == pytest.approx(base, rel=1e-5, abs=1e-12)
        assert math.isfinite(r["pred"]) and math.isfinite(r["real"])
    grpo = rows[0]
    # GRPO: weights 1, no effect (to float32 autograd rounding)
    assert abs(grpo["effect_pred"]) <= 1e-5 * abs(grpo["pred_unweighted"]) + 1e-12 and grpo["effect_real"] == 0.0
    assert any(r["weight_mean"] < 1.0 for r in rows[1:])  # the weightings did something
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["summary"]["n"] == len(C.METHODS)
    md = (tmp_path / "result.md").read_text()
    assert "Pearson" in md and "entropy_band" in md
    with pytest.raises(ValueError, match="warm_steps"):
        C.run_cause_check(tmp_path, warm_steps=0)
    with pytest.raises(ValueError, match="unknown weighting"):
        C.run_cause_check(tmp_path, methods=["nope"])
