"""Golden test: one short ``steer train`` run per registered method reproduces the metrics that
were recorded before the core was reorganised (``metrics.json``, written by ``capture.py``), bit
for bit, timing keys excepted.

``INTENDED`` lists, per method, the metric keys that a semantic fix changed on purpose, with the
reason; every other key must be identical. A method missing from the fixture (a new one) is
skipped by name so that additions do not need a fixture regeneration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden.capture import build_policy, run_demo_quick, run_method

HERE = Path(__file__).parent
FIXTURE = json.loads((HERE / "metrics.json").read_text())
DEMO_FIXTURE = json.loads((HERE / "demo_quick.json").read_text())

#: method -> {key prefix: reason}. A key matches when it starts with the prefix; "*" = every key.
INTENDED: dict[str, dict[str, str]] = {
    "steer_linear": {
        "m/weight_mean": "linear mapping follows the released code: when every |Omega| of the scope is "
        "equal (here all 0: no non-zero advantage) each valid token gets (lambda_min + lambda_max) / 2, "
        "not 1; those tokens have zero loss, so the update is unchanged",
        "m/weight_min": "as m/weight_mean",
    },
}


def _intended(method: str, key: str) -> bool:
    rules = INTENDED.get(method, {})
    return "*" in rules or any(key.startswith(p) for p in rules)


@pytest.fixture(scope="module")
def golden_policy(tmp_path_factory):
    return build_policy(tmp_path_factory.mktemp("golden_ws"))


def _compare(method: str, got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want), f"{method}: {len(got)} metric lines, fixture has {len(want)}"
    for step, (g, w) in enumerate(zip(got, want)):
        keys = {k for k in set(g) | set(w) if not _intended(method, k)}
        missing = sorted(k for k in keys if k in w and k not in g)
        assert not missing, f"{method} line {step}: keys gone: {missing}"
        # New keys are allowed (more metrics); values of the old ones must be identical.
        diff = {k: (g[k], w[k]) for k in keys if k in g and k in w and g[k] != w[k]}
        assert not diff, f"{method} line {step}: changed values (got, fixture): {diff}"


@pytest.mark.parametrize("method", sorted(FIXTURE))
def test_metrics_unchanged(method, golden_policy, tmp_path):
    from steer.core.registry import list_methods

    if method not in list_methods():
        pytest.fail(f"method {method!r} was in the golden fixture but is no longer registered")
    _compare(method, run_method(method, golden_policy, tmp_path / method), FIXTURE[method])


def test_demo_quick_unchanged(tmp_path):
    got = run_demo_quick(tmp_path / "demo", tmp_path / "cache")
    assert sorted(got) == sorted(DEMO_FIXTURE)
    for name, want in DEMO_FIXTURE.items():
        _compare(f"demo:{name}", got[name], want)
