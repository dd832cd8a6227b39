"""Test-only helpers: a task whose verdict does not depend on the policy's skill (so that even a
barely trained policy gets groups with mixed rewards and non-zero advantages)."""

from __future__ import annotations

import hashlib

from steer.train.tasks import CountdownTaskAdapter


class CoinTask(CountdownTaskAdapter):
    """Countdown prompts; a response is 'correct' when a hash of its text is even."""

    def correct(self, problem, response: str) -> bool:
        return hashlib.sha256(response.encode()).digest()[0] % 2 == 0
