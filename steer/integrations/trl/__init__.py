"""steer inside TRL: a ``GRPOTrainer`` subclass that trains any method of the registry.

The one-class switch::

    from steer.integrations.trl import SteerGRPOConfig, SteerGRPOTrainer, math_reward

    args = SteerGRPOConfig(output_dir="out", steer_method="steer", epsilon_high=0.28)
    trainer = SteerGRPOTrainer(model="Qwen/Qwen2.5-Math-7B", reward_funcs=math_reward, args=args,
                               train_dataset=dataset)
    trainer.train()

Install with ``pip install steer[trl]``. The integration mirrors a private method of TRL 1.16
(``GRPOTrainer._compute_loss``), so it is pinned to TRL 1.16.x; importing it under another TRL
version raises ImportError. Documentation: docs/trl.md.
"""

from __future__ import annotations

TESTED_TRL = ((1, 16), (1, 17))  # [lower, upper) on (major, minor)


def _check_trl_version() -> str:
    try:
        import trl
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "steer.integrations.trl needs TRL 1.16.x: pip install 'steer[trl]' (or 'trl>=1.16,<1.17')"
        ) from e
    from packaging.version import Version

    v = Version(trl.__version__)
    lo, hi = TESTED_TRL
    if not (lo <= (v.major, v.minor) < hi):
        raise ImportError(
            f"steer.integrations.trl is written against TRL 1.16.x (it mirrors GRPOTrainer._compute_loss, a "
            f"private method), but TRL {trl.__version__} is installed: pip install 'trl>=1.16,<1.17'"
        )
    return trl.__version__


TRL_VERSION = _check_trl_version()

from steer.integrations.trl.config import SUPPORTED_LOSS_TYPES, SteerGRPOConfig  # noqa: E402
from steer.integrations.trl.rewards import math_reward  # noqa: E402
from steer.integrations.trl.trainer import SteerGRPOTrainer  # noqa: E402

__all__ = ["SUPPORTED_LOSS_TYPES", "TRL_VERSION", "SteerGRPOConfig", "SteerGRPOTrainer", "math_reward"]


def __getattr__(name: str):
    if "async" in name.lower():
        raise AttributeError(
            f"steer.integrations.trl has no {name}: TRL's experimental async GRPO trainer "
            "(trl.experimental.async_grpo) computes its own loss, which never applies a method's token weights; "
            "use SteerGRPOTrainer (vLLM generation works with it: use_vllm=True)"
        )
    raise AttributeError(f"module 'steer.integrations.trl' has no attribute {name!r}")
