"""Benchmark evaluation: pass@k / avg@k, generation backends, ``steer eval``.

Python API: :func:`evaluate` (benchmarks by name, resumable JSONL), :func:`evaluate_problems`
(the trainer's periodic validation on an in-memory model), :func:`pass_at_k`, :func:`avg_at_k`.
"""

from steer.evaluation.evaluate import EvalReport, evaluate, evaluate_problems, summarize
from steer.evaluation.passk import avg_at_k, mean_pass_at_k, pass_at_k

__all__ = [
    "EvalReport",
    "avg_at_k",
    "evaluate",
    "evaluate_problems",
    "mean_pass_at_k",
    "pass_at_k",
    "summarize",
]
