"""Data: verl parquet / JSONL / HF-folder loaders, the benchmark registry, prompt templates."""

from steer.data.benchmarks import (
    BENCHMARKS,
    PAPER_K,
    benchmark_path,
    data_dir,
    list_benchmarks,
    load_benchmark,
)
from steer.data.loaders import (
    EmptyGoldWarning,
    deduplicate,
    load_any,
    load_hf_disk,
    load_jsonl,
    load_parquet,
)
from steer.data.problems import EmptyGoldError, Problem, parse_row, strip_dapo_instructions
from steer.data.templates import TEMPLATES, answer_format, apply_template, render

__all__ = [
    "BENCHMARKS",
    "EmptyGoldError",
    "EmptyGoldWarning",
    "PAPER_K",
    "TEMPLATES",
    "Problem",
    "answer_format",
    "apply_template",
    "benchmark_path",
    "data_dir",
    "deduplicate",
    "list_benchmarks",
    "load_any",
    "load_benchmark",
    "load_hf_disk",
    "load_jsonl",
    "load_parquet",
    "parse_row",
    "render",
    "strip_dapo_instructions",
]
