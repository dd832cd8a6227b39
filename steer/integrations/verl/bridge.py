"""The one object that puts steer into verl and takes it out again: :data:`BRIDGE`.

steer changes verl in exactly these places (verl 0.9.1), each a :class:`Patch` of the table
:func:`steer_patches`:

- ``verl.trainer.ppo.core_algos.POLICY_LOSS_REGISTRY``: steer's loss modes (one entry per mode,
  registered with verl's own ``register_policy_loss``);
- ``verl.workers.utils.losses.ppo_loss`` and the name ``verl.workers.engine_workers.ppo_loss``
  (bound there at import): the wrap that hands the per-token entropies to steer's losses;
- ``verl.workers.engine.base.BaseEngine.train_batch``: STEER's mini-batch scope pass;
- ``verl.workers.engine_workers.TrainingWorker.train_mini_batch``: steer's metrics reduced over
  the step;
- ``verl.workers.engine_workers.ActorRolloutRefWorker.init_model``: the actor-config checks.

The replacements themselves live in :mod:`steer.integrations.verl.losses`. A module that is not
imported yet is patched right after it executes (a ``sys.meta_path`` finder, :class:`_PostImportFinder`),
so installing imports no engine code and resolves no platform. The bridge records, for every
patch it applied, the owner, the original and the replacement; :meth:`VerlBridge.uninstall` puts
every original back (the very objects, ``is``-identical), restores the registry entries and
removes the finder. The per-call context (what the ``ppo_loss`` wrap hands a loss, the scope
statistics of the mini-batch, the metric collector, the scope pre-pass flag) is
:attr:`VerlBridge.context`.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from steer.integrations.verl.context import CONTEXT, ORIGINALS, CallContext, LossContext

__all__ = [
    "BRIDGE",
    "AppliedPatch",
    "CallContext",
    "LossContext",
    "Patch",
    "VerlBridge",
    "ensure_installed",
    "installed",
    "steer_patches",
]

logger = logging.getLogger("steer.integrations.verl")

_MISSING = object()
_REGISTRY_MODULE = "verl.trainer.ppo.core_algos"


@dataclass(frozen=True)
class Patch:
    """One verl attribute steer replaces: ``target`` (``"name"`` or ``"Class.name"``) in ``module``,
    replaced by ``make(original)``."""

    module: str
    target: str
    make: Callable[[Any], Any]

    @property
    def where(self) -> str:
        return f"{self.module}.{self.target}"


@dataclass
class AppliedPatch:
    """A patch in place: where it is, what was there before and what steer put there."""

    patch: Patch
    owner: Any
    attr: str
    original: Any
    replacement: Any
    own: bool  # the original sat in the owner's own __dict__ (else it was inherited)


def _owner_and_attr(module, target: str) -> tuple[Any, str]:
    owner = module
    *path, attr = target.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, attr


def steer_patches() -> tuple[Patch, ...]:
    """steer's patches of verl, in the order they are applied (a module's patches run when it is
    imported; ``engine_workers`` imports ``utils.losses`` first, so the ``ppo_loss`` it binds by
    name is already steer's wrap, whose original is verl's ``ppo_loss``)."""
    from steer.integrations.verl import losses

    def wrap_ppo_loss(_original):
        return losses.ppo_loss  # one function for both names; it calls the recorded original

    return (
        Patch("verl.workers.utils.losses", "ppo_loss", wrap_ppo_loss),
        Patch("verl.workers.engine.base", "BaseEngine.train_batch", losses.train_batch_with_scope),
        Patch("verl.workers.engine_workers", "ppo_loss", wrap_ppo_loss),
        Patch(
            "verl.workers.engine_workers",
            "TrainingWorker.train_mini_batch",
            losses.train_mini_batch_with_metrics,
        ),
        Patch(
            "verl.workers.engine_workers", "ActorRolloutRefWorker.init_model", losses.init_model_with_checks
        ),
    )


def steer_losses() -> dict[str, Callable]:
    """steer's policy losses by verl loss mode (the registry entries the bridge adds)."""
    from steer.integrations.verl import losses

    return {mode: losses.make_loss(mode) for mode in losses.LOSS_MODES}


class VerlBridge:
    """Installs steer's patches into verl and removes them again.

    ``install()`` registers the losses at once and applies every patch (at once where its module is
    imported, else when it is); a second call does nothing. ``uninstall()`` restores every original
    verl object and registry entry exactly and removes the import hook. ``installed`` says which
    state the bridge is in; ``applied`` lists the patches in place with their originals.
    """

    def __init__(
        self,
        patches: Callable[[], tuple[Patch, ...]] = steer_patches,
        registrations: Callable[[], dict[str, Callable]] = steer_losses,
        context: CallContext | None = None,
    ) -> None:
        self.context = context if context is not None else CallContext()
        self._patches_fn = patches
        self._registrations_fn = registrations
        self._lock = threading.RLock()
        self._installed = False
        self._patches: tuple[Patch, ...] = ()
        self._applied: list[AppliedPatch] = []
        self._registered: dict[str, Any] = {}  # loss mode -> the entry it replaced (or _MISSING)
        self._finder = _PostImportFinder(self._on_module_executed)

    # ---------------------------------------------------------------- status

    @property
    def installed(self) -> bool:
        return self._installed

    @property
    def patches(self) -> tuple[Patch, ...]:
        """The patches of the current installation (applied or waiting for their module)."""
        return self._patches

    @property
    def applied(self) -> tuple[AppliedPatch, ...]:
        return tuple(self._applied)

    @property
    def registered(self) -> tuple[str, ...]:
        """The loss modes this installation registered in verl."""
        return tuple(self._registered)

    def original(self, module: str, target: str) -> Any:
        """verl's own object behind an applied patch (``None`` when that patch is not in place)."""
        for ap in self._applied:
            if ap.patch.module == module and ap.patch.target == target:
                return ap.original
        return None

    # ---------------------------------------------------------------- install / uninstall

    def install(self) -> None:
        """Register steer's losses in verl's registry and put every patch in place (idempotent).

        Raises (and changes nothing) if a loss-mode name is already registered by something else:
        a silent overwrite would change what an existing verl config runs.
        """
        with self._lock:
            if self._installed:
                return
            self._register_losses()
            self._installed = True
            try:
                self._patches = tuple(self._patches_fn())
                for module in dict.fromkeys(p.module for p in self._patches):
                    mod = sys.modules.get(module)
                    if mod is not None:
                        self._apply_module(module, mod)
                    else:
                        self._finder.watch(module)
                if self._finder.watched and self._finder not in sys.meta_path:
                    sys.meta_path.insert(0, self._finder)
            except BaseException:
                self.uninstall()
                raise

    def uninstall(self) -> None:
        """Restore every original verl object and registry entry (``is``-identical) and remove the
        import hook; a no-op when not installed."""
        with self._lock:
            if not self._installed:
                return
            self._installed = False
            while self._finder in sys.meta_path:
                sys.meta_path.remove(self._finder)
            self._finder.clear()
            for ap in reversed(self._applied):
                self._restore(ap)
            self._applied.clear()
            self._patches = ()
            self._unregister_losses()

    # ---------------------------------------------------------------- the registry

    def _register_losses(self) -> None:
        from verl.trainer.ppo import core_algos

        losses = self._registrations_fn()
        registry = core_algos.POLICY_LOSS_REGISTRY
        for mode in losses:
            existing = registry.get(mode)
            ours = getattr(existing, "_steer_loss_mode", None) == mode or getattr(
                existing, "_steer_failed", False
            )
            if existing is not None and not ours:
                raise RuntimeError(
                    f"verl already has a policy loss named {mode!r} ({existing.__module__}.{existing.__name__}); "
                    "steer does not overwrite it"
                )
        for mode, fn in losses.items():
            self._registered[mode] = registry.get(mode, _MISSING)
            core_algos.register_policy_loss(mode)(fn)

    def _unregister_losses(self) -> None:
        registry = sys.modules[_REGISTRY_MODULE].POLICY_LOSS_REGISTRY
        for mode, previous in reversed(list(self._registered.items())):
            if previous is _MISSING:
                registry.pop(mode, None)
            else:
                registry[mode] = previous
        self._registered.clear()

    # ---------------------------------------------------------------- the patches

    def _on_module_executed(self, name: str, module) -> None:
        with self._lock:
            if self._installed:
                self._apply_module(name, module)

    def _apply_module(self, name: str, module) -> None:
        for patch in self._patches:
            if patch.module == name:
                self._apply(patch, module)

    def _apply(self, patch: Patch, module) -> None:
        owner, attr = _owner_and_attr(module, patch.target)
        if any(ap.owner is owner and ap.attr == attr for ap in self._applied):
            return
        own = attr in vars(owner)
        current = getattr(owner, attr)
        original = current
        for ap in self._applied:  # a name bound to a replacement of ours (engine_workers.ppo_loss)
            if current is ap.replacement:
                original = ap.original
        replacement = patch.make(original)
        setattr(owner, attr, replacement)
        self._applied.append(AppliedPatch(patch, owner, attr, original, replacement, own))
        ORIGINALS[(patch.module, patch.target)] = original  # what steer's replacements call

    def _restore(self, ap: AppliedPatch) -> None:
        ORIGINALS.pop((ap.patch.module, ap.patch.target), None)
        current = getattr(ap.owner, ap.attr, _MISSING)
        if current is not ap.replacement:
            logger.warning(
                "%s was changed by someone else after steer patched it; restoring verl's own", ap.patch.where
            )
        if ap.own:
            setattr(ap.owner, ap.attr, ap.original)
        else:
            delattr(ap.owner, ap.attr)


class _PostImportFinder:
    """A ``sys.meta_path`` finder that calls ``on_executed(name, module)`` right after a watched
    module is executed (it finds the module's spec through the rest of ``sys.meta_path`` and wraps
    the loader's ``exec_module``)."""

    def __init__(self, on_executed: Callable[[str, Any], None]) -> None:
        self._on_executed = on_executed
        self._watched: set[str] = set()
        self._busy: set[str] = set()

    @property
    def watched(self) -> frozenset[str]:
        return frozenset(self._watched)

    def watch(self, name: str) -> None:
        self._watched.add(name)

    def clear(self) -> None:
        self._watched.clear()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self._watched or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module
        on_executed = self._on_executed

        def run(module, _exec=exec_module, _name=fullname):
            _exec(module)
            on_executed(_name, module)

        spec.loader.exec_module = run
        return spec

    # importlib calls this on meta-path finders when caches are invalidated
    def invalidate_caches(self) -> None:
        return None


#: the bridge of this process (the plugin installs it)
BRIDGE = VerlBridge(context=CONTEXT)


def ensure_installed() -> None:
    """Register steer's losses in verl and put the hooks in place (idempotent): ``BRIDGE.install()``."""
    BRIDGE.install()


def installed() -> bool:
    return BRIDGE.installed
