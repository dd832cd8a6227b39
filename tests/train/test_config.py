"""Config loading: shipped configs load, overrides apply, bad keys/values fail early naming them."""

from __future__ import annotations

import pytest

from steer.train.config import ConfigError, describe_schema, load_config, to_dict, to_yaml


@pytest.mark.parametrize("name", ["testbed", "extreme", "qwen_math_7b_dapo"])
def test_shipped_configs_load_and_validate(name):
    cfg = load_config(name)
    assert cfg.rollout.n >= 2
    again = load_config(None, [f"{k}={v}" for k, v in []])
    assert again.trainer.steps > 0


def test_extreme_and_real_recipe_values():
    ext = load_config("extreme")
    assert ext.method["eps_low"] == 0.99 and ext.method["eps_high"] == 5.0
    steer = load_config("extreme", ["method.name=steer"])
    assert steer.method == {"name": "steer", "eps_low": 0.99, "eps_high": 5.0}
    q = load_config("qwen_math_7b_dapo")
    assert q.trainer.prompts_per_step == 512 and q.rollout.n == 8 and q.trainer.num_mini_batches == 16
    assert q.optim.lr == 1e-6 and q.rollout.max_new_tokens == 3072
    assert q.method["eps_low"] == 0.2 and q.method["eps_high"] == 0.28 and q.method["clip_c"] == 10.0
    assert q.method.get("kl_coef", 0.0) == 0.0 and q.method.get("entropy_coef", 0.0) == 0.0
    assert q.task.name == "math" and q.task.train_path == "hf:BytedTsinghua-SIA/DAPO-Math-17k"
    assert q.task.heldout_path == "aime24"  # the shipped benchmark copy


def test_overrides_apply_with_types():
    cfg = load_config(
        "testbed", ["optim.lr=3e-4", "rollout.n=4", "method.name=steer", "method.lambda_min=0.5"]
    )
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.rollout.n == 4
    assert cfg.method == {"name": "steer", "lambda_min": 0.5}


@pytest.mark.parametrize(
    "override, needle",
    [
        ("optim.lrr=1", "optim.lrr"),
        ("nosuch.key=1", "nosuch"),
        ("optim.lr=abc", "optim.lr"),
        ("optim.lr=0", "optim.lr"),
        ("optim.lr=-1e-3", "optim.lr"),
        ("rollout.n=1", "rollout.n"),
        ("rollout.top_p=1.5", "rollout.top_p"),
        ("rollout.temperature=0", "rollout.temperature"),
        ("trainer.num_mini_batches=3", "trainer.num_mini_batches"),
        ("trainer.nonfinite=ignore", "trainer.nonfinite"),
        ("eval.ks=[1,64]", "eval.ks"),
        ("checkpoint.best_mode=up", "checkpoint.best_mode"),
        ("method.name=nosuch", "method"),
        ("method.lambda_minn=0.5", "lambda_minn"),
        ("trainer.steps=ten", "trainer.steps"),
        ("model.source=hf", "model.name_or_path"),
    ],
)
def test_invalid_key_or_value_names_it(override, needle):
    with pytest.raises(ConfigError) as exc:
        load_config("testbed", [override] + (["method.name=steer"] if "lambda" in override else []))
    assert needle in str(exc.value)


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        load_config("testbed", ["optim.lr"])


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/cfg.yaml")


def test_roundtrip_yaml_and_schema_listing(tmp_path):
    cfg = load_config("testbed", ["method.name=steer"])
    p = tmp_path / "c.yaml"
    p.write_text(to_yaml(cfg))
    assert to_dict(load_config(p)) == to_dict(cfg)
    keys = {k for k, _, _ in describe_schema()}
    assert {"optim.lr", "rollout.n", "trainer.num_mini_batches", "checkpoint.every", "method"} <= keys


def run_cli(argv: list[str]) -> int:
    """``steer <argv>`` through this area's own sub-commands (steer/train/cli.py)."""
    import argparse

    from steer.train.cli import register

    parser = argparse.ArgumentParser(prog="steer")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_invalid_config_fails_before_any_work(tmp_path, capsys):
    """`steer train` with a bad key exits 2 with the key named, and writes nothing."""
    out = tmp_path / "never"
    rc = run_cli(["train", "--config", "testbed", f"logging.out_dir={out}", "optim.lrr=1"])
    assert rc == 2
    assert "optim.lrr" in capsys.readouterr().err
    assert not out.exists()
    rc = run_cli(
        ["train", "--config", "testbed", f"logging.out_dir={out}", "method.name=steer", "method.lambda_min=2"]
    )
    assert rc == 2
    assert "lambda_min" in capsys.readouterr().err
    assert not out.exists()


def test_cli_print_config(capsys):
    assert run_cli(["train", "--config", "extreme", "--print-config", "method.name=steer"]) == 0
    out = capsys.readouterr().out
    assert "eps_high: 5.0" in out and "name: steer" in out


def test_extreme_uses_the_testbed_warm_start():
    """extreme.yaml says it trains the same cached policy as testbed.yaml: the warm-start cache
    key (every field of the warm-start config) must be the same."""
    from steer.testbed import WarmStartConfig, cache_key

    keys = {}
    for name in ("testbed", "extreme"):
        cfg = load_config(name)
        keys[name] = cache_key(WarmStartConfig(**dict(cfg.warm_start.overrides)))
        assert cfg.model.source == "testbed" and cfg.warm_start.cache_dir is None
    assert keys["testbed"] == keys["extreme"]
    assert cache_key(WarmStartConfig(threads=1)) != keys["testbed"]  # the old extreme.yaml's


def test_reasoning_gym_task_by_name():
    cfg = load_config(
        "testbed",
        [
            "task.name=reasoning_gym",
            "task.options.dataset=chain_sum",
            "task.train_size=8",
            "task.heldout_size=4",
        ],
    )
    # the file's countdown options belong to the file's task and are dropped
    assert cfg.task.options == {"dataset": "chain_sum"}
    from steer.train.tasks import build_task

    task = build_task(cfg.task)
    train, held = task.train_problems(), task.heldout_problems()
    assert len(train) == 8 and len(held) == 4
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    p = train[0]
    assert task.correct(p, f"  {p.answer}\n") and not task.correct(p, f"{p.answer} or so")
    assert not task.correct(p, f"The answer is {p.answer}")  # strict: no partial credit
    assert task.canonical(p, f" {p.answer} ") == p.answer and task.canonical(p, "x") is None
    assert task.solutions(p) == (p.answer,)
    other = build_task(
        load_config(
            "testbed", ["task.name=reasoning_gym", "task.options.dataset=leg_counting", "task.train_size=3"]
        ).task
    )
    assert len(other.train_problems()) == 3  # a dataset without a testbed preset: its own defaults
    # a countdown override keeps the file's options
    assert load_config("testbed", ["task.train_size=8"]).task.options == {"min_count": 3, "max_count": 3}


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["task.name=reasoning_gym"], "task.options.dataset"),
        (["task.name=reasoning_gym", "task.options.dataset=no_such_dataset"], "no_such_dataset"),
        (["task.name=reasoning_gym", "task.options.dataset=chain_sum", "task.options.colour=red"], "colour"),
        (
            ["task.name=reasoning_gym", "task.options.dataset=chain_sum", "task.options.config.min_terms=0"],
            "min_terms",
        ),
        (["task.name=nosuch"], "task.name"),
    ],
)
def test_bad_task_options_fail_early(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config("testbed", overrides)


def test_real_recipe_keeps_no_eval_logits():
    assert load_config("qwen_math_7b_dapo").eval.entropy is False
    assert load_config("testbed").eval.entropy is True


def test_docs_configuration_reference_matches_the_schema():
    """docs/training.md lists every schema key with its default and type, and nothing else."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    section = doc.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = dict(
        (m.group(1), (m.group(2), m.group(3).strip()))
        for m in re.finditer(r"^\| `([^`]+)` \| `([^`]*)` \| ([^|]+) \|$", section, flags=re.M)
    )
    schema = {k: (repr(v), t.replace(" | ", " or ")) for k, v, t in describe_schema()}  # no | in a table
    assert set(rows) == set(schema)
    for k, (default, typ) in schema.items():
        assert rows[k] == (default, typ), k


def test_chain_sum_config_is_the_measured_run():
    """docs/training.md's chain_sum numbers come from the testbed config with these overrides."""
    from steer.train.config import to_dict

    measured = load_config(
        "testbed",
        [
            "task.name=reasoning_gym",
            "task.options.dataset=chain_sum",
            "warm_start.overrides.source=chain_sum",
            "warm_start.overrides.train_problems=1000",
            "optim.lr=3e-5",
            "rollout.max_new_tokens=8",
            "trainer.steps=30",
            "eval.every=10",
            "logging.out_dir=runs/chain_sum",
        ],
    )
    assert to_dict(load_config("chain_sum")) == to_dict(measured)
