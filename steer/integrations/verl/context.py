"""The per-call state that steer's verl replacements share with :mod:`steer.integrations.verl.bridge`
(which applies them): the context variables of a call and verl's own objects behind the applied
patches. Kept apart from the bridge so that the replacements (:mod:`steer.integrations.verl.losses`)
need not import the bridge that imports them."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["CONTEXT", "ORIGINALS", "CallContext", "LossContext"]


@dataclass
class LossContext:
    """What the ``ppo_loss`` wrap hands the registered loss for one micro-batch."""

    entropy: torch.Tensor | None = None
    old_entropy: torch.Tensor | None = None
    calculate_entropy: bool = False
    scope_stats: dict[str, torch.Tensor] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    n_tokens: float = 0.0
    ran: bool = False


class CallContext:
    """The per-call state of the patches (context variables: each thread and task sees its own).

    - ``loss``: the :class:`LossContext` of the micro-batch being computed (set by the ``ppo_loss`` wrap);
    - ``scope``: the reduced scope statistics of the current mini-batch (set by the scope pass);
    - ``collect``: the list of (metrics, n_tokens) of every trained micro-batch of the current update;
    - ``scope_pass``: set during the scope pre-pass (the loss then only computes scope statistics).
    """

    def __init__(self) -> None:
        self.loss: contextvars.ContextVar[LossContext | None] = contextvars.ContextVar(
            "steer_verl_loss_ctx", default=None
        )
        self.scope: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
            "steer_verl_scope", default=None
        )
        self.collect: contextvars.ContextVar[list | None] = contextvars.ContextVar(
            "steer_verl_collect", default=None
        )
        self.scope_pass: contextvars.ContextVar[list | None] = contextvars.ContextVar(
            "steer_verl_scope_pass", default=None
        )


#: The context of the installed bridge (:data:`steer.integrations.verl.bridge.BRIDGE`).
CONTEXT = CallContext()

#: ``(module, target) -> verl's own object`` for every patch the bridge has in place (written by
#: the bridge when it applies a patch, removed when it restores one).
ORIGINALS: dict[tuple[str, str], Any] = {}
