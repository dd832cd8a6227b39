"""The loss-mode names steer registers in verl, derived from the method table.

Importing this module imports nothing else: the plugin needs the names even when the rest of steer
fails to import (it then registers loss modes that report the failure). The full derivation is
:data:`steer.integrations.verl.losses.LOSS_MODES`; when that cannot be imported, every row of the
method table (:mod:`steer.core.presets`, plain Python) gives a name, a superset that is only used
to report the failure.
"""

#: verl's own loss modes that a steer method shares a name with; ours get the prefix ``steer_``
#: (verl's clip_cov / kl_cov stay untouched)
VERL_OWN_LOSS_MODES = ("vanilla", "clip_cov", "kl_cov")


def loss_mode_name(method: str) -> str:
    """The verl loss mode of steer's method ``method``."""
    return f"steer_{method}" if method in VERL_OWN_LOSS_MODES else method


def loss_mode_names() -> tuple[str, ...]:
    """Every loss mode steer registers in verl, in method-table order."""
    try:
        from steer.integrations.verl.losses import LOSS_MODES
    except Exception:  # a broken install: the plain-Python table, to report the failure under every name
        from steer.core.presets import PRESETS

        return tuple(loss_mode_name(row.name) for row in PRESETS)
    return tuple(LOSS_MODES)


def __getattr__(name: str):
    if name == "LOSS_MODE_NAMES":
        return loss_mode_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
