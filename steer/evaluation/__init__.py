"""Benchmark evaluation: pass@k / avg@k, the generation path, the held-out evaluator, ``steer eval``.

Python API: :func:`evaluate` (benchmarks by name, resumable JSONL), :func:`evaluate_problems`
(in-memory validation of math problems), :func:`pass_at_k`, :func:`avg_at_k`;
``steer.evaluation.generate.sample`` (the one generation path: training rollouts, held-out
evaluation, the HF backend of ``steer eval``) and ``steer.evaluation.heldout.evaluate_heldout``
(the one held-out evaluator: the trainer's ``heldout/*`` metrics, the testbed's
``evaluate_policy``, :func:`evaluate_problems`).
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
