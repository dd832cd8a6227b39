"""Shared fixtures of the analysis tests: one micro warm-start cache per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def analysis_ws_cache(tmp_path_factory):
    """A warm-start cache directory shared by the analysis tests (the micro policy of the
    ``--quick`` budgets is built once, about 10-20 s, then reused)."""
    return tmp_path_factory.mktemp("analysis_warmstart")
