"""A user error ends in one line naming the problem and exit 2, before any model is loaded or any
output folder created; ``--debug`` / ``STEER_DEBUG=1`` shows the traceback instead."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from steer.cli import main


def _one_line(capsys, *words) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err[0]
    return err[0]


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    """Every refusal here must come before any model is loaded or trained."""
    import transformers

    from steer.train.trainer import Trainer

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the user error was reported")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    monkeypatch.setattr(Trainer, "__init__", boom)


def _run(argv, capsys, *words) -> str:
    assert main(argv) == 2
    return _one_line(capsys, *words)


def test_eval_missing_model(capsys):
    _run(["eval", "--model", "/nonexistent"], capsys, "--model /nonexistent", "no such folder")


def test_eval_model_not_cached_offline(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _run(["eval", "--model", "Qwen/Qwen2.5-Math-7B", "--limit", "1"], capsys, "not in the Hugging Face cache")
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def unreachable(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    _run(["eval", "--model", "Qwen/Qwen2.5-Math-7B", "--limit", "1"], capsys, "cannot be reached")


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--benchmarks", "aime2024"], ["unknown benchmark 'aime2024'", "aime24"]),
        (["--k", "0"], ["--k must be >= 1"]),
        (["--limit", "0"], ["--limit must be >= 1"]),
        (["--top-p", "1.5"], ["--top-p"]),
        (["--data-dir", "/nonexistent-data"], ["--data-dir /nonexistent-data"]),
    ],
)
def test_eval_bad_arguments_before_the_model(extra, words, capsys):
    # the model does not exist either: the arguments are checked first, the model after them
    _run(["eval", "--model", "/nonexistent", *extra], capsys, *words)


def test_eval_read_only_output(capsys, tmp_path):
    if not Path("/sys").is_dir():
        pytest.skip("needs a read-only /sys")
    (tmp_path / "config.json").write_text("{}")  # a model folder as far as the checks go
    _run(
        ["eval", "--model", str(tmp_path), "--benchmarks", "aime24", "--out", "/sys/steer/s.jsonl"],
        capsys,
        "not writable",
    )


def test_probe_missing_data_and_read_only_out(capsys):
    _run(["probe", "--data", "/nonexistent.parquet"], capsys, "--data /nonexistent.parquet")
    if Path("/sys").is_dir():
        _run(["probe", "--out", "/sys/steer-probe"], capsys, "--out /sys/steer-probe", "not writable")


def test_train_bad_train_path_creates_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    base = ["train", "--config", "testbed", "--out", str(out), "task.name=math"]
    _run([*base, "task.train_path=/nonexistent.parquet"], capsys, "task.train_path /nonexistent.parquet")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _run([*base, f"task.train_path={empty}"], capsys, "empty file")
    one = tmp_path / "one.jsonl"
    one.write_text('{"prompt": "1+1?", "answer": "2"}\n')
    _run([*base, f"task.train_path={one}"], capsys, "1 problems, fewer than trainer.prompts_per_step")
    assert not out.exists()


def test_train_read_only_output(capsys):
    if not Path("/sys").is_dir():
        pytest.skip("needs a read-only /sys")
    _run(["train", "--out", "/sys/steer-run"], capsys, "not writable")


def test_yaml_syntax_error_and_list(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  steps: [1, 2\noptim: {lr: 1}\n")
    _run(["train", "--config", str(bad)], capsys, str(bad), "YAML syntax error at line")
    lst = tmp_path / "list.yaml"
    lst.write_text("- trainer\n- optim\n")
    _run(["train", "--config", str(lst)], capsys, "not a mapping")
    _run(["probe", "--config", str(lst)], capsys, "not a mapping")


def test_debug_shows_the_traceback(capsys, monkeypatch):
    from steer.errors import UserError

    with pytest.raises(UserError):
        main(["eval", "--model", "/nonexistent", "--debug"])
    monkeypatch.setenv("STEER_DEBUG", "1")
    with pytest.raises(UserError):
        main(["eval", "--model", "/nonexistent"])


def test_eval_on_a_run_folder_points_to_its_checkpoints(capsys, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    _run(["eval", "--model", str(tmp_path)], capsys, "a steer run folder", "checkpoints/best")
