"""Reward of the CPU end-to-end run: a dense score of the response's characters in [0, 1].

A randomly initialised policy never solves a problem, so a correctness reward would be 0 for every
response and GRPO's advantages (and STEER's weights) would be trivially 0 / 1. This score (the
mean of ``ord(c) % 10 / 9`` over the characters) differs between almost any two sampled
responses, so every group has non-zero advantages and the run exercises real weights and
gradients.
"""


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    if not solution_str:
        return 0.0
    return sum((ord(ch) % 10) / 9 for ch in solution_str) / len(solution_str)
