"""The method table drives every listing of the methods: verl's loss modes, the TRL help text and
the methods table of docs/methods.md. A method registered here (a new row of existing parts) shows
up in all of them; the docs check fails for it until the docs have its row."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from steer.core import registry as R
from steer.core.presets import Preset

DOCS = Path(__file__).resolve().parents[2] / "docs" / "methods.md"


def docs_table_names(text: str) -> set[str]:
    """The method names in the first column of the table under "## The methods" in docs/methods.md."""
    section = text.split("## The methods", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) > 2 and "`" in cells[1]:
            names.update(re.findall(r"`([a-z0-9_]+)`", cells[1]))
    return names


def docs_disagreement(methods: list[str], text: str) -> tuple[list[str], list[str]]:
    """(registered methods without a docs row, docs rows without a registered method)."""
    documented = docs_table_names(text)
    return sorted(set(methods) - documented), sorted(documented - set(methods))


def test_docs_methods_table_matches_the_method_table():
    missing, extra = docs_disagreement(R.list_methods(), DOCS.read_text())
    assert missing == [] and extra == [], f"docs/methods.md: no row for {missing}; rows without a method {extra}"


@pytest.fixture
def new_method(monkeypatch):
    """A new method, registered for the test only (the tables are restored afterwards)."""
    monkeypatch.setattr(R, "_PRESETS", dict(R._PRESETS))
    monkeypatch.setattr(R, "_CONFIGS", dict(R._CONFIGS))
    name = "steer_lambda_half"
    R.define_method(
        Preset(name, weighting="steer", defaults={"lambda_min": 0.5, "eps_high": 0.28}, citation="a test row")
    )
    yield name
    R.__dict__.pop(R._class_name(name), None)


def test_a_new_method_reaches_every_listing(new_method):
    from steer.integrations.verl import names as verl_names
    from steer.integrations.verl.losses import LOSS_MODES

    assert new_method in R.list_methods()
    assert LOSS_MODES[new_method] == new_method
    assert new_method in verl_names.LOSS_MODE_NAMES
    missing, _ = docs_disagreement(R.list_methods(), DOCS.read_text())
    assert missing == [new_method]

    trl_config = pytest.importorskip("steer.integrations.trl.config")
    field = next(f for f in dataclasses.fields(trl_config.SteerGRPOConfig) if f.name == "steer_method")
    assert f"'{new_method}'" in field.metadata["help"]
    assert f"'{new_method}'" in field.metadata.copy()["help"]  # what HfArgumentParser reads


def test_listings_leave_out_what_an_engine_cannot_run():
    from steer.integrations.verl.losses import LOSS_MODES

    modes = dict(LOSS_MODES)
    # verl's own names stay verl's; ours get the prefix
    assert modes["steer_clip_cov"] == "clip_cov" and "clip_cov" not in modes
    # methods that need each token's cause (a model pass) run in steer's own trainer only
    for name in ("steer_causal", "entropy_band"):
        assert name not in modes.values()
    # plain GRPO rows are verl settings, and group-level advantages need whole groups
    for name in ("grpo", "dual_clip", "gtpo", "opo"):
        assert name not in modes.values()
    trl_config = pytest.importorskip("steer.integrations.trl.config")
    listed = trl_config.trl_methods()
    assert "steer_causal" not in listed and "entropy_band" not in listed and "kl_penalty" not in listed
    assert "steer_directional" in listed and "gtpo" in listed


def test_a_new_functions_metric_reductions_are_declared_with_it(monkeypatch):
    """Adding a method is two places: the function (with its params and its metric reductions) and
    its row; no third file declares how its metrics reduce."""
    import torch

    from steer.core import metrics as M
    from steer.core import parts as P

    monkeypatch.setattr(M, "REDUCTIONS", dict(M.REDUCTIONS))
    monkeypatch.setattr(P, "WEIGHTINGS", dict(P.WEIGHTINGS))
    monkeypatch.setitem(P._TABLES, "weighting", P.WEIGHTINGS)
    with pytest.raises(KeyError):
        M.reduction_of("halving/kept")

    @P.register_weighting("halving", metrics={"halving/kept": "token_mean"})
    def halving(batch, mask, c, surrogate, generator):
        return P.Weighting(torch.full(mask.shape, 0.5), {"halving/kept": 1.0})

    assert M.reduction_of("halving/kept") == "token_mean"
    assert "halving" in P.WEIGHTINGS
