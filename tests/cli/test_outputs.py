"""Consistent flags and outputs: --out everywhere, the command a result records, the report's
panel titles and integer step ticks, the cost of cause-check --quick."""

from __future__ import annotations

import shlex

from steer.cli import build_parser, main

#: Commands that write no output folder: ``models`` prints the named models and their converted
#: folders (the conversion lives in the steer cache, STEER_CACHE_DIR).
NO_OUTPUT_FOLDER = {"models"}


def test_every_command_takes_out():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert NO_OUTPUT_FOLDER <= set(sub.choices)
    for name, p in sub.choices.items():
        opts = {o for a in p._actions for o in a.option_strings}
        assert ("--out" in opts) != (name in NO_OUTPUT_FOLDER), name


def test_reproduce_records_its_out(tmp_path, monkeypatch):
    import steer.analysis.reproduce as R

    seen = []
    monkeypatch.setattr(R, "run_claim", lambda name, out, **kw: seen.append(kw["command"]) or {})
    out = tmp_path / "my out"
    assert main(["reproduce", "clipping", "--quick", "--out", str(out)]) == 0
    argv = shlex.split(seen[0])
    assert argv[:2] == ["steer", "reproduce"]
    assert ["--out", str(out)] in [argv[i : i + 2] for i in range(len(argv))]


def test_cause_check_quick_checks_the_small_policy_only(tmp_path, monkeypatch):
    import steer.analysis.cause_check as C

    seen = {}
    monkeypatch.setattr(C, "run_cause_check", lambda out, **kw: seen.update(kw))
    assert main(["cause-check", "--quick", "--out", str(tmp_path)]) == 0
    assert seen["sizes"] == ["tiny"]  # no 3.5M warm-start to build first
    assert main(["cause-check", "--out", str(tmp_path)]) == 0
    assert seen["sizes"] == ["tiny", "small"]


def test_report_panels_have_readable_titles_and_integer_step_ticks(tmp_path, monkeypatch):
    from steer.analysis import plots

    runs = {"a": [{"step": s, "heldout/acc": 0.1 * s, "m/clipfrac_low": 0.01} for s in (1, 2, 3)]}
    kept = []
    monkeypatch.setattr(plots.plt, "close", kept.append)  # keep the saved figure to look at
    plots.plot_lines(runs, ["heldout/acc", "m/clipfrac_low"], tmp_path / "x.png", title="t", ylabel="y")
    (fig,) = kept
    axes = [ax for ax in fig.axes if ax.get_xlabel() == "step"]
    assert [ax.get_title() for ax in axes] == ["held-out accuracy", "clipped tokens, low side (share)"]
    for ax in axes:
        ticks = [x for x in ax.get_xticks() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]]
        assert ticks and all(float(x).is_integer() for x in ticks), ticks
    assert plots.pretty_key("heldout/pass@4") == "held-out pass@4"
