"""Two processes (gloo on CPU) train SteerGRPOTrainer for two steps per STEER scope.

What it shows (docs/trl.md, "Distributed training"): no rank hangs; with ``scope='minibatch'`` every
rank's micro-batches use the same max|Omega| (the MAX over every micro-batch of the optimiser step
on every rank); with ``scope='microbatch'`` (the released code's choice) each micro-batch uses its
own, which differs between ranks; the logged steer metrics are reduced over ranks by their declared
reduction (tokens summed, omega_max the maximum), identical on both ranks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "true"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(ROOT / "tests/trl/dist_worker.py"),
        str(out),
        "minibatch",
        "microbatch",
    ]
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:  # a hang in a collective
        pytest.fail(f"two-process run did not finish in 300 s (hang?):\n{(e.stderr or b'')[-3000:]}")
    assert p.returncode == 0, p.stderr[-5000:]
    return {
        scope: [json.loads((out / f"{scope}-rank{r}.json").read_text()) for r in (0, 1)]
        for scope in ("minibatch", "microbatch")
    }


def test_two_ranks_ran(runs):
    for ranks in runs.values():
        assert [r["world"] for r in ranks] == [2, 2]
        assert all(len(r["used"]) == 4 for r in ranks)  # 2 steps x 2 micro-batches


def test_minibatch_scope_is_the_same_on_every_rank(runs):
    r0, r1 = runs["minibatch"]
    assert r0["used"] == r1["used"]
    assert r0["used"][0] == r0["used"][1] and r0["used"][2] == r0["used"][3]  # one value per optimiser step


def test_microbatch_scope_is_per_rank(runs):
    r0, r1 = runs["microbatch"]
    assert r0["used"] != r1["used"]


def test_logged_metrics_are_reduced_over_ranks(runs):
    for r0, r1 in runs.values():
        assert r0["logs"] == r1["logs"]
        for step, rec in enumerate(r0["logs"]):
            sl = slice(2 * step, 2 * step + 2)
            assert rec["steer/tokens"] == sum(r0["tokens"][sl]) + sum(r1["tokens"][sl])
            assert rec["steer/omega_max"] == pytest.approx(max(r0["used"][sl] + r1["used"][sl]), rel=1e-6)
