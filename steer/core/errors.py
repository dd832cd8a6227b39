"""Typed errors of the core.

:class:`NonFiniteError` is what every core function raises when an input it must read holds NaN or
+-inf on a valid (mask=True) position: log-probs, entropies, advantages, rewards, the sums of the
``exact`` estimator, reference log-probs, Omega, logits or hidden states. It subclasses
``ValueError`` (so existing ``except ValueError`` handlers keep working), and a caller that wants
to skip a poisoned micro-batch instead of crashing catches it by type, never by message text::

    try:
        loss, metrics = method.compute_loss(batch)
    except NonFiniteError as exc:
        skip_update(reason=exc.name)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["NonFiniteError", "check_finite"]


class NonFiniteError(ValueError):
    """NaN or +-inf on valid positions of a core input.

    Attributes: ``name`` (the input, e.g. ``"logp"``, ``"omega"``, ``"logits"``) and ``count`` (how
    many offending values, or None when unknown).
    """

    def __init__(self, message: str, *, name: str | None = None, count: int | None = None) -> None:
        self.name = name
        self.count = count
        super().__init__(message)

    @classmethod
    def on_valid(cls, name: str, count: int) -> NonFiniteError:
        """The standard message: ``<name> contains <count> NaN/inf value(s) on valid (mask=True) tokens``."""
        return cls(
            f"{name} contains {count} NaN/inf value(s) on valid (mask=True) tokens", name=name, count=count
        )


def check_finite(mask: Tensor, **tensors: Tensor | None) -> None:
    """Raise :class:`NonFiniteError` naming the first input with NaN/inf where ``mask`` is True
    (``None`` inputs are skipped; values on masked positions are ignored)."""
    for name, x in tensors.items():
        if x is None:
            continue
        bad = mask & ~torch.isfinite(x.detach())
        if bool(bad.any()):
            raise NonFiniteError.on_valid(name, int(bad.sum()))
