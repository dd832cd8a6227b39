"""Assets of the CPU end-to-end run: a tiny Qwen2 policy built locally and a tiny math data set in
verl's parquet schema (no download). Used by test_verl_e2e.py; runnable as a script:

    .venv-verl/bin/python tests_verl/e2e_assets.py OUT_DIR
"""

from __future__ import annotations

import random
import sys
from pathlib import Path


def build_policy(out: Path) -> Path:
    """The project's testbed tokenizer (byte level: "\\n" is one token, as verl requires) and
    its 124k-parameter ``micro`` Qwen2 model, saved with ``save_pretrained``."""
    from steer.testbed.model import build_model, save_policy
    from steer.testbed.tokenizer import build_tokenizer

    tok = build_tokenizer()
    model = build_model(tok, preset="micro", seed=0)
    return save_policy(model, tok, out)


def build_data(out_dir: Path, n_train: int = 32, n_val: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """Tiny addition problems: prompt "a+b=" as a chat message, ground truth the sum."""
    import pandas as pd

    rng = random.Random(seed)

    def rows(n: int, split: str) -> list[dict]:
        out = []
        for i in range(n):
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            out.append(
                {
                    "data_source": "steer_tiny_add",
                    "prompt": [{"role": "user", "content": f"{a}+{b}="}],
                    "ability": "math",
                    "reward_model": {"style": "rule", "ground_truth": str(a + b)},
                    "extra_info": {"split": split, "index": i, "scorer": "math_verify"},
                }
            )
        return out

    out_dir.mkdir(parents=True, exist_ok=True)
    train, val = out_dir / "train.parquet", out_dir / "val.parquet"
    pd.DataFrame(rows(n_train, "train")).to_parquet(train)
    pd.DataFrame(rows(n_val, "test")).to_parquet(val)
    return train, val


if __name__ == "__main__":
    out = Path(sys.argv[1])
    print(build_policy(out / "policy"))
    print(*build_data(out / "data"))
