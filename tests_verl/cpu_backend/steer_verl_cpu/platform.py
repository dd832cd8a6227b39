"""A CPU platform for verl 0.9.1 (test-only), selected with ``VERL_PLATFORM=cpu``.

verl has no CPU platform: with no accelerator it falls back to "nvidia" and reports the device as
cuda. This one reports device "cpu" and the gloo backend, and keeps Ray's "GPU" resource name so
that verl's worker pools (which always ask for GPUs) can be scheduled on logical GPUs
(``ray_init.num_gpus``). Its device module is ``torch.cpu`` plus no-op memory, RNG and profiling
calls. verl builds the process-group backend as ``cpu:gloo,{device}:{backend}``, which becomes
``cpu:gloo,cpu:gloo`` here and which torch rejects; the platform, once selected, de-duplicates such
strings in ``torch.distributed.init_process_group``.

Auto-detection never picks it (``is_platform_available`` is False): it is only used when asked for.
"""

from __future__ import annotations

import functools
import types
from contextlib import contextmanager
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry


def _noop(*_args, **_kwargs):
    return None


def _zero(*_args, **_kwargs):
    return 0


def _make_device_module() -> types.ModuleType:
    """``torch.cpu`` with the torch.cuda-like calls verl makes, as no-ops where CPU has none."""
    mod = types.ModuleType("steer_verl_cpu.device")
    for name in dir(torch.cpu):
        if not name.startswith("_"):
            setattr(mod, name, getattr(torch.cpu, name))
    mod.is_available = lambda: True
    mod.device_count = lambda: 1
    mod.current_device = lambda: "cpu"
    mod.set_device = _noop
    mod.synchronize = _noop
    mod.empty_cache = _noop
    mod.ipc_collect = _noop
    mod.set_per_process_memory_fraction = _noop
    mod.reset_peak_memory_stats = _noop
    mod.memory_allocated = _zero
    mod.memory_reserved = _zero
    mod.max_memory_allocated = _zero
    mod.max_memory_reserved = _zero
    mod.mem_get_info = lambda *a, **k: (0, 0)
    mod.get_device_name = lambda *a, **k: "cpu"
    mod.get_rng_state = lambda *a, **k: torch.get_rng_state()
    mod.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    mod.manual_seed = lambda seed: torch.manual_seed(seed)
    mod.manual_seed_all = lambda seed: torch.manual_seed(seed)
    mod.is_initialized = lambda: True

    class _Range:
        def __init__(self, *_a, **_k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    mod.nvtx = types.SimpleNamespace(range=_Range, range_push=_noop, range_pop=_noop, mark=_noop)
    mod.memory = types.SimpleNamespace(_set_allocator_settings=_noop, _record_memory_history=_noop)
    return mod


_DEVICE_MODULE = _make_device_module()
_PATCHED = False


def _dedupe_backend(backend: Any) -> Any:
    """'cpu:gloo,cpu:gloo' -> 'cpu:gloo' (torch rejects a device listed twice)."""
    if not isinstance(backend, str) or "," not in backend:
        return backend
    seen: dict[str, str] = {}
    for part in backend.split(","):
        part = part.strip()
        dev, _, be = part.partition(":")
        seen.setdefault(dev, part)
    return ",".join(seen.values())


def _patch_process_group_backend() -> None:
    global _PATCHED
    if _PATCHED:
        return
    import torch.distributed as dist

    original = dist.init_process_group

    @functools.wraps(original)
    def init_process_group(*args, **kwargs):
        if "backend" in kwargs:
            kwargs["backend"] = _dedupe_backend(kwargs["backend"])
        elif args:
            args = (_dedupe_backend(args[0]), *args[1:])
        return original(*args, **kwargs)

    dist.init_process_group = init_process_group
    _PATCHED = True


@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    """Device "cpu", backend gloo, Ray resource "GPU" (logical)."""

    def __init__(self) -> None:
        _patch_process_group_backend()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return _DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        return False

    def current_device(self):
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        return None

    def synchronize(self, device_index=None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
