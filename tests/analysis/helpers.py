"""Test-only helpers of the analysis tests."""

from __future__ import annotations

import zlib


class CoinTask:
    """The countdown prompts with a deterministic pseudo-random verdict per response, so that a
    random tiny policy gets groups with mixed rewards (and some equal-reward groups)."""

    name = "coin"
    chat_template = True

    def __init__(self, inner):
        self.inner = inner

    def train_problems(self):
        return self.inner.train_problems()

    def heldout_problems(self):
        return self.inner.heldout_problems()

    def prompt(self, problem):
        return self.inner.prompt(problem)

    def correct(self, problem, response):
        return zlib.crc32(response.encode()) % 2 == 0

    def canonical(self, problem, response):
        return None
