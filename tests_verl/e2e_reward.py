"""Reward of the CPU end-to-end run: the share of digit characters in the response.

A randomly initialised policy never solves a problem, so a correctness reward would be 0 for
every response and GRPO's advantages (and STEER's weights) would be trivially 0 / 1; this dense
score varies within every group, so the run exercises real advantages and gradients.
"""


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    if not solution_str:
        return 0.0
    return sum(ch.isdigit() for ch in solution_str) / len(solution_str)
