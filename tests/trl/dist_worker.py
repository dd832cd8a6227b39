"""One rank of the two-process (gloo, CPU) test of SteerGRPOTrainer; launched by
test_distributed.py with ``python -m torch.distributed.run --nproc_per_node 2``.

For each STEER scope it trains two steps and writes, per rank, the max|Omega| every micro-batch
actually used (before any cross-rank reduction), this rank's valid tokens, and the logged
(reduced) steer metrics, to ``<out>/<scope>-rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

from steer.integrations.trl import SteerGRPOTrainer  # noqa: E402
from steer.testbed.tokenizer import build_tokenizer  # noqa: E402
from tests.trl.helpers import COMMON, length_reward, prompt_dataset, tiny_model  # noqa: E402


def run(scope: str, out: Path) -> None:
    from steer.integrations.trl import SteerGRPOConfig

    rank = int(os.environ["RANK"])
    tok = build_tokenizer()
    args = SteerGRPOConfig(
        **{
            **COMMON,
            "output_dir": str(out / f"run-{scope}"),
            "max_steps": 2,
            "gradient_accumulation_steps": 2,
        },
        steer_method="steer",
        steer_method_kwargs={"scope": scope},
        seed=0,
    )
    tr = SteerGRPOTrainer(
        model=tiny_model(tok),
        reward_funcs=length_reward,
        args=args,
        train_dataset=prompt_dataset(16),
        processing_class=tok,
    )
    used, tokens = [], []
    orig = tr.steer_method.token_loss

    def spy(batch):
        tl = orig(batch)
        used.append(tl.metrics["steer/omega_max"])
        tokens.append(float(batch.response_mask.sum()))
        return tl

    tr.steer_method.token_loss = spy
    tr.train()
    logs = [
        {k: v for k, v in h.items() if k.startswith("steer/")} for h in tr.state.log_history if "loss" in h
    ]
    (out / f"{scope}-rank{rank}.json").write_text(
        json.dumps({"world": tr.accelerator.num_processes, "used": used, "tokens": tokens, "logs": logs})
    )


if __name__ == "__main__":
    out = Path(sys.argv[1])
    for scope in sys.argv[2:]:
        run(scope, out)
