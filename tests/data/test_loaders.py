"""Loaders on the real files in ../shared/data and the shipped copies, malformed rows, JSONL, HF
folders, templates."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steer.data import (
    BENCHMARKS,
    PAPER_K,
    apply_template,
    benchmark_path,
    data_dir,
    deduplicate,
    load_any,
    load_benchmark,
    load_jsonl,
    load_parquet,
    render,
)
from steer.data.benchmarks import ENV_VAR, SHIPPED_DIR

#: the authors' full files (a development checkout's ../shared/data)
FULL = data_dir()

EXPECTED = {  # rows, unique problems, answer format asked by the prompt
    "aime24": (960, 30, "answer_line"),
    "aime25": (960, 30, "answer_line"),
    "amc23": (1280, 40, "answer_line"),
    "math500": (500, 500, "boxed"),
    "minerva": (272, 272, "boxed"),
    "olympiad": (675, 675, "boxed"),
    "dapo17k": (17398, 17398, "boxed"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_real_file_loads(name):
    rows, uniq, fmt = EXPECTED[name]
    raw = load_parquet(benchmark_path(name, FULL), name=name)
    assert len(raw) == rows
    probs = deduplicate(raw)
    assert len(probs) == uniq
    assert sum(p.repeats for p in probs) == rows
    assert {p.answer_format for p in probs} == {fmt}
    assert len({p.id for p in probs}) == uniq
    for p in probs:
        assert p.gold and p.problem
        assert not p.problem.startswith("Solve the following math problem step by step. The last line")
        assert not p.problem.startswith("by step")


def test_repeats_are_deduplicated_and_k_matches_the_paper():
    for n in ("aime24", "aime25", "amc23"):
        assert {p.repeats for p in load_benchmark(n, data_dir=FULL)} == {32}
        assert PAPER_K[n] == 32
    assert len(load_benchmark("aime24", data_dir=FULL, dedupe=False)) == 960
    assert len(load_benchmark("math500", limit=7)) == 7


def test_aime25_problem_rebuilt_from_the_prompt():
    raw = pq.read_table(benchmark_path("aime25")).to_pylist()
    assert raw[0]["extra_info"]["raw_problem"].startswith(" by step")  # the cut the README warns of
    p = load_benchmark("aime25")[0]
    assert p.problem.startswith("Find the sum of all integer bases")
    # aime24's raw_problem is intact: the rebuilt problem equals it
    raw24 = {
        r["extra_info"]["raw_problem"].strip() for r in pq.read_table(benchmark_path("aime24")).to_pylist()
    }
    assert all(p.problem in raw24 for p in load_benchmark("aime24"))


def _write(tmp_path, rows, name="bad.parquet"):
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


GOOD = {
    "data_source": "x",
    "prompt": [{"role": "user", "content": "What is 1+1?"}],
    "ability": "math",
    "reward_model": {"ground_truth": "2", "style": "rule"},
    "extra_info": {"index": 0},
}


@pytest.mark.parametrize(
    "bad,match",
    [
        ({**GOOD, "reward_model": {"ground_truth": "", "style": "rule"}}, "no gold"),
        ({**GOOD, "prompt": []}, "prompt"),
        ({**GOOD, "prompt": [{"role": "user", "content": "  "}]}, "no non-empty user"),
    ],
)
def test_malformed_row_names_file_and_row(tmp_path, bad, match):
    good2 = {**GOOD, "extra_info": {"index": 1}}
    path = _write(tmp_path, [GOOD, good2, {**bad, "extra_info": {"index": 2}}])
    with pytest.raises(ValueError, match=rf"bad\.parquet:row 2: .*{match}"):
        load_parquet(path)


def test_conflicting_duplicates_are_an_error(tmp_path):
    other = {**GOOD, "reward_model": {"ground_truth": "3", "style": "rule"}}
    with pytest.raises(ValueError, match="row 1.*row 0"):
        deduplicate(load_parquet(_write(tmp_path, [GOOD, other])))


def test_jsonl_verl_and_flat_layouts(tmp_path):
    path = tmp_path / "set.jsonl"
    rows = [
        GOOD,
        {"id": 7, "problem": "Compute 2*3.", "answer": 6.0},  # AMC-style float gold -> "6"
        {"question": "Q?", "final_answer": ["$\\frac{1}{2}$"]},  # olympiad layout
        {"problem": "P", "solution": "so $\\boxed{\\sqrt{2}}$"},  # MATH layout
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ps = load_jsonl(path)
    assert [p.gold for p in ps] == ["2", "6", "\\frac{1}{2}", "\\sqrt{2}"]
    assert ps[1].id == "set/7" and ps[2].id == "set/row2"
    assert load_any(path)[0].problem == "What is 1+1?"
    path.write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"set\.jsonl:row 1: invalid JSON"):
        load_jsonl(path)
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps({"problem": "no answer"}) + "\n")
    with pytest.raises(ValueError, match=r"set\.jsonl:row 1: no gold"):
        load_jsonl(path)


def test_hf_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = pq.read_table(benchmark_path("math500")).slice(0, 5).to_pylist()
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "one"))
    ps = load_any(tmp_path / "one")
    assert [p.gold for p in ps] == [r["reward_model"]["ground_truth"] for r in rows]
    datasets.DatasetDict({"test": ds, "train": ds}).save_to_disk(str(tmp_path / "two"))
    with pytest.raises(ValueError, match="split"):
        load_any(tmp_path / "two")
    assert len(load_any(tmp_path / "two", split="test")) == 5


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_shipped_copies_hold_every_problem_once(name):
    """The package's benchmark files: the de-duplicated problems of the authors' files, the same
    text, gold, prompt and order, each once."""
    assert benchmark_path(name).parent == SHIPPED_DIR
    full = load_benchmark(name, data_dir=FULL)
    shipped = load_benchmark(name)
    assert len(load_parquet(benchmark_path(name))) == len(full) == len(shipped)
    assert [(p.id, p.problem, p.gold, p.prompt, p.data_source, p.answer_format) for p in shipped] == [
        (p.id, p.problem, p.gold, p.prompt, p.data_source, p.answer_format) for p in full
    ]


def test_shipped_copies_are_package_data():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"data/sets/*.parquet"' in text and '"data/sets/*.md"' in text
    assert (SHIPPED_DIR / "SOURCES.md").is_file()


def test_training_set_missing_says_where_to_get_it(monkeypatch, tmp_path):
    import steer.data.benchmarks as b

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(b, "_candidates", lambda d: [tmp_path / "none"])
    with pytest.raises(FileNotFoundError, match="not shipped.*hf:BytedTsinghua-SIA/DAPO-Math-17k"):
        benchmark_path("dapo17k")
    assert benchmark_path("aime24") == SHIPPED_DIR / "aime24.parquet"


def test_hub_offline_is_one_clear_line(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", "/nonexistent-steer-cache")
    with pytest.raises(OSError, match=r"^hf:nobody/no-such-set: not in the datasets cache.*offline"):
        load_any("hf:nobody/no-such-set")


def test_data_dir_resolution(tmp_path, monkeypatch):
    assert (data_dir() / BENCHMARKS["aime24"]).is_file()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    # the env var is tried first, then the repo default: still found
    assert (data_dir() / "aime24.parquet").is_file()
    with pytest.raises(FileNotFoundError, match="looked in: .*nowhere"):
        data_dir(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("gsm9k")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_benchmark("aime24", data_dir=tmp_path)


def test_templates():
    p = load_benchmark("aime24")[0]
    m = apply_template(p, "as_is")
    assert m == p.prompt and "Answer:" in m[0]["content"]
    q = apply_template(p, "qwen_boxed")
    assert q[0]["role"] == "system" and "\\boxed{}" in q[0]["content"] and q[1]["content"] == p.problem
    d = apply_template(load_benchmark("math500")[0], "dapo")
    assert d[0]["content"].startswith("Solve the following math problem step by step.")
    assert d[0]["content"].endswith('after "Answer:".')
    # the DAPO template reproduces the stored aime24 prompt exactly
    assert apply_template(p, "dapo") == p.prompt
    b = apply_template(load_benchmark("dapo17k", limit=1)[0], "dapo_boxed")
    assert b == load_benchmark("dapo17k", limit=1)[0].prompt
    with pytest.raises(ValueError, match="valid"):
        apply_template(p, "nope")
    assert render(q).endswith("assistant:")


def test_empty_golds_are_listed_and_refused_or_skipped_explicitly(tmp_path):
    from steer.data import EmptyGoldWarning

    rows = [GOOD]
    for i, g in ((1, ""), (2, "   "), (3, None)):
        rows.append({**GOOD, "reward_model": {"ground_truth": g, "style": "rule"}, "extra_info": {"index": i}})
    rows.append({**GOOD, "extra_info": {"index": 4}})
    path = _write(tmp_path, rows)
    with pytest.raises(ValueError, match=r"3 row\(s\) without one: rows 1, 2, 3 .*empty_gold='skip'"):
        load_parquet(path)
    with pytest.warns(EmptyGoldWarning, match=r"skipped 3 row\(s\) without a gold answer: rows 1, 2, 3"):
        ps = load_parquet(path, empty_gold="skip")
    assert [p.id for p in ps] == ["bad/0", "bad/4"]
    with pytest.raises(ValueError, match="empty_gold must be one of"):
        load_parquet(path, empty_gold="ignore")
    jl = tmp_path / "e.jsonl"
    jl.write_text(json.dumps({"problem": "P", "answer": ""}) + "\n" + json.dumps({"problem": "Q", "answer": "1"}) + "\n")
    with pytest.raises(ValueError, match="rows 0 "):
        load_any(jl)
    with pytest.warns(EmptyGoldWarning):
        assert [p.gold for p in load_any(jl, empty_gold="skip")] == ["1"]


def test_data_layer_does_not_import_rewards():
    import subprocess
    import sys

    code = (
        "import sys, steer.data, steer.data.loaders, steer.data.benchmarks, steer.data.templates;"
        "bad = [m for m in sys.modules if m.startswith('steer.rewards')]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    from steer.data import parse_row

    p = parse_row({"problem": "P", "solution": r"so $\boxed{\left\{1,2\right.}$"}, where="x")
    assert p.gold == r"\left\{1,2\right."
