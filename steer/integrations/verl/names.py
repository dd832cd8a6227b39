"""The loss modes steer registers in verl, derived from the method table.

Importing this module imports nothing else: the plugin needs the names even when the rest of steer
fails to import (it then registers loss modes that report the failure). :data:`LOSS_MODES` reads
the registry when it is used; when the core cannot be imported, every row of the method table
(:mod:`steer.core.presets`, plain Python) gives a name, a superset that is only used to report the
failure.
"""

from collections.abc import Mapping

#: verl's own loss modes that a steer method shares a name with; ours get the prefix ``steer_``
#: (verl's clip_cov / kl_cov stay untouched)
VERL_OWN_LOSS_MODES = ("vanilla", "clip_cov", "kl_cov")


def loss_mode_name(method: str) -> str:
    """The verl loss mode of steer's method ``method``."""
    return f"steer_{method}" if method in VERL_OWN_LOSS_MODES else method


#: advantage estimators a verl policy loss can apply itself (token-local given verl's GRPO advantage)
LOSS_LEVEL_ADVANTAGES = frozenset({"grpo", "entropy_adv"})

#: what a verl policy loss cannot give a method: each token's cause (a model pass before the loss)
#: and the ``exact`` estimator's sums (verl computes sum_pi_squared only)
_UNAVAILABLE = frozenset({"cause", "sums"})


def runs_as_verl_loss(name: str) -> bool:
    """Whether the registered method ``name`` is one of steer's verl loss modes: its advantage can
    be applied in the loss, it changes verl's vanilla GRPO loss (a weighting, another policy loss or
    a shaped advantage: plain GRPO rows such as dr_grpo or dual_clip are verl settings) and, with
    its defaults, it reads nothing a verl loss cannot provide."""
    from steer.core.registry import method_preset, row_requirements

    row = method_preset(name)
    if row.advantage not in LOSS_LEVEL_ADVANTAGES or row.controller is not None:
        return False
    if (row.advantage, row.policy_loss, row.weighting) == ("grpo", "vanilla", None):
        return False
    return not (row_requirements(name) & _UNAVAILABLE)


class _LossModes(Mapping):
    """loss_mode -> core method, derived from the method table each time it is read (a method
    defined with ``define_method`` joins it; verl's registry holds the modes of install time)."""

    def _table(self) -> dict:
        from steer.core.registry import list_methods

        return {loss_mode_name(n): n for n in list_methods() if runs_as_verl_loss(n)}

    def __getitem__(self, mode: str) -> str:
        return self._table()[mode]

    def __iter__(self):
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return repr(self._table())


LOSS_MODES: Mapping = _LossModes()


def loss_mode_names() -> tuple:
    """Every loss mode steer registers in verl, in method-table order."""
    try:
        return tuple(LOSS_MODES)
    except Exception:  # a broken install: the plain-Python table, to report the failure under every name
        from steer.core.presets import PRESETS

        return tuple(loss_mode_name(row.name) for row in PRESETS)


def __getattr__(name: str):
    if name == "LOSS_MODE_NAMES":
        return loss_mode_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
