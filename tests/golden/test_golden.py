"""Golden tests: any change of any logged metric of any registered method fails, on every x86-64
CPU (fixtures and how they are made: ``capture.py``).

Why tolerances, and these ones. PyTorch picks its CPU kernels by instruction set (AVX-512, AVX2
or the portable ``default`` set, see ``ATEN_CPU_CAPABILITY``), and the kernels round differently,
so a run reproduces bit for bit on one machine, never across machines. Each float is therefore
compared as ``|got - want| <= RTOL * |want| + ATOL``; integers, strings and the set of keys stay
exact.

- ``metrics.json`` and ``fixed.json`` run in float64 from a policy drawn by numpy (identical on
  every machine). Measured between the three kernel sets on one AMD EPYC (2026-12-06): at most
  3e-15 relative on every key of every method, ``steer_causal``'s and ``entropy_band``'s cause
  pass included. ``RTOL_F64 = 1e-9`` leaves six orders of magnitude for rounding, and still
  catches a relative change of 1e-7 in the learning rate (a test below), far below what float32
  could resolve. A float32 run amplified rounding beyond any useful tolerance (GTPO's loss, a
  sum of z-scores that cancels, moved by 6% between kernel sets; the cause pass's prediction by
  60%), which is why the per-method fixtures are float64.
- ``demo_quick.json`` is ``steer demo --quick`` as a user runs it: float32, a policy warm-started
  on the machine itself. Measured: at most 8e-8 relative between the AVX-512 and ``default``
  kernel sets, and between this machine and the one that recorded the fixture.
  ``RTOL_F32 = 1e-5`` (about 100 float32 ulps) leaves two orders of magnitude.

``test_small_changes_fail`` shows that the tolerance does not hide a real change of a method.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.golden.capture import run_demo_quick, run_method, run_method_fixed

HERE = Path(__file__).parent
RUNS = json.loads((HERE / "metrics.json").read_text())
FIXED = json.loads((HERE / "fixed.json").read_text())
DEMO = json.loads((HERE / "demo_quick.json").read_text())

#: float64 runs: measured kernel-set drift <= 3e-15 relative (module docstring).
RTOL_F64, ATOL_F64 = 1e-9, 1e-12
#: Keys computed in float32 even in a float64 run: HF ``generate`` returns its logits in float32
#: whatever the model's dtype (measured drift 6e-8 relative); compared as float32 values.
FLOAT32_KEYS = ("heldout/entropy",)
#: float32 values: measured drift <= 8e-8 relative (module docstring).
RTOL_F32, ATOL_F32 = 1e-5, 1e-7


def _close(got, want, rtol: float, atol: float) -> bool:
    if isinstance(want, bool) or isinstance(got, bool) or not isinstance(want, (int, float)):
        return got == want
    if isinstance(want, int) and isinstance(got, int):
        return got == want  # counts and shapes: exact
    if not isinstance(got, (int, float)):
        return False
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return got == want
    return abs(got - want) <= rtol * abs(want) + atol


def compare(name: str, got: list[dict], want: list[dict], *, rtol: float, atol: float) -> None:
    """Every key of the fixture is logged again with a value within the tolerance (new keys are
    allowed: more metrics); the number of records is exact."""
    assert len(got) == len(want), f"{name}: {len(got)} metric lines, fixture has {len(want)}"
    for step, (g, w) in enumerate(zip(got, want)):
        missing = sorted(k for k in w if k not in g)
        assert not missing, f"{name} line {step}: keys gone: {missing}"
        diff = {
            k: (g[k], w[k])
            for k in w
            if not _close(g[k], w[k], *((RTOL_F32, ATOL_F32) if k in FLOAT32_KEYS else (rtol, atol)))
        }
        assert not diff, f"{name} line {step}: changed values (got, fixture): {diff}"


def _check_registered(method: str) -> None:
    from steer.core.registry import list_methods

    if method not in list_methods():
        pytest.fail(f"method {method!r} was in the golden fixture but is no longer registered")


def test_every_method_has_fixtures():
    """A newly registered method gets its golden lines (regenerate with capture.py)."""
    from steer.core.registry import list_methods

    assert sorted(RUNS) == sorted(FIXED) == sorted(list_methods())


@pytest.mark.parametrize("method", sorted(RUNS))
def test_run_metrics_unchanged(method, tmp_path):
    _check_registered(method)
    compare(method, run_method(method, tmp_path / method), RUNS[method], rtol=RTOL_F64, atol=ATOL_F64)


@pytest.mark.parametrize("method", sorted(FIXED))
def test_fixed_rollout_metrics_unchanged(method, tmp_path):
    _check_registered(method)
    got = run_method_fixed(method, tmp_path / method)
    compare(f"fixed:{method}", got, FIXED[method], rtol=RTOL_F64, atol=ATOL_F64)


@pytest.mark.parametrize(
    "method, change",
    [
        ("steer", "method.lambda_min=0.69"),  # 0.7, the paper's setting
        ("clip_higher", "method.eps_high=0.27"),  # 0.28, DAPO's
        ("steer_binary", "method.quantile=0.79"),  # 0.8, the ablation's top 20%
        ("gtpo", "method.alpha2=0.099"),
        ("grpo", "optim.lr=3.0000003e-3"),  # 3e-3 changed by 1e-7 relative
    ],
)
def test_small_changes_fail(method, change, tmp_path):
    """A small real change of a method (or of the optimiser) is caught by the comparison."""
    got = run_method_fixed(method, tmp_path / method, extra=[change])
    with pytest.raises(AssertionError, match="changed values"):
        compare(f"fixed:{method}", got, FIXED[method], rtol=RTOL_F64, atol=ATOL_F64)


def test_compare_rules():
    """The comparison itself: rounding passes; a change, a lost key, a changed count or a NaN fails."""
    want = [{"loss": 0.5, "m/tokens": 223, "acc": float("nan"), "name": "x"}]
    compare(
        "ok",
        [{"loss": 0.5 * (1 + 1e-12), "m/tokens": 223, "acc": float("nan"), "name": "x", "new": 1}],
        want,
        rtol=RTOL_F64,
        atol=ATOL_F64,
    )
    for bad in (
        {"loss": 0.5 * (1 + 1e-8), "m/tokens": 223, "acc": float("nan"), "name": "x"},
        {"loss": 0.5, "m/tokens": 224, "acc": float("nan"), "name": "x"},
        {"loss": 0.5, "m/tokens": 223, "acc": 0.0, "name": "x"},
        {"loss": 0.5, "m/tokens": 223, "acc": float("nan"), "name": "y"},
        {"loss": float("nan"), "m/tokens": 223, "acc": float("nan"), "name": "x"},
    ):
        with pytest.raises(AssertionError):
            compare("bad", [bad], want, rtol=RTOL_F64, atol=ATOL_F64)
    with pytest.raises(AssertionError, match="keys gone"):
        compare("bad", [{"loss": 0.5}], want, rtol=RTOL_F64, atol=ATOL_F64)


def test_demo_quick_unchanged(tmp_path):
    got = run_demo_quick(tmp_path / "demo", tmp_path / "cache")
    assert sorted(got) == sorted(DEMO)
    for name, want in DEMO.items():
        compare(f"demo:{name}", got[name], want, rtol=RTOL_F32, atol=ATOL_F32)
