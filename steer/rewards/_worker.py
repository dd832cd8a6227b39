"""Code that runs inside a verification worker process (see ``steer.rewards.pool``)."""

from __future__ import annotations

import logging
import os
import time

_WARM = False
#: Warmed up at start (user-registered scorers are not run here: they may be anything).
BUILTIN = ("math_verify", "dapo", "qwen", "qwen_strict")
_FUNCS: dict = {}


def _silence() -> None:
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _func(name: str):
    f = _FUNCS.get(name)
    if f is None:
        from steer.rewards.registry import get_scorer

        f = _FUNCS[name] = get_scorer(name).load()
    return f


def warm_up() -> None:
    """Import the scorers and run each once on small inputs (sympy/antlr lazy initialisation)."""
    global _WARM
    if _WARM:
        return
    _silence()
    from steer.rewards import math_verify_scorer as mvs

    before = mvs._in_worker
    mvs.set_in_worker(True)  # no SIGALRM during the warm-up (it may run in the host process)
    try:
        for name in BUILTIN:
            f = _func(name)
            for resp, gold in (("\\boxed{\\frac{1}{2}}", "0.5"), ("Answer: 12", "12"), ("$x^2+1$", "x^2+1")):
                try:
                    f(resp, gold)
                except Exception:
                    pass
    finally:
        mvs.set_in_worker(before)
    _WARM = True


def _current_vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def worker_main(conn, mem_limit_mb: int | None) -> None:
    """Serve chunks ``[(idx, scorer, response, gold), ...]``; answer one message per item.

    ``mem_limit_mb`` caps how much address space the worker may ADD to what it inherited (a
    forked child of a trainer holding a model or CUDA mappings starts with a large address
    space), so a runaway sympy computation raises MemoryError instead of exhausting the host.
    """
    if mem_limit_mb:
        try:
            import resource

            lim = _current_vm_bytes() + int(mem_limit_mb) * 1024 * 1024
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                lim = min(lim, hard)
            resource.setrlimit(resource.RLIMIT_AS, (lim, hard))
        except (ImportError, ValueError, OSError):
            pass
    warm_up()
    from steer.rewards.math_verify_scorer import set_in_worker

    set_in_worker(True)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        for idx, scorer, response, gold in msg:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                ok, pred, reason = _func(scorer)(response, gold)
                if pred is not None:
                    pred = str(pred)[:500]
            except MemoryError:
                ok, pred, reason = False, None, "error: MemoryError"
            except Exception as e:  # a scorer bug or a sympy failure: the item is wrong
                ok, pred, reason = False, None, f"error: {type(e).__name__}: {str(e)[:200]}"
            conn.send((idx, bool(ok), pred, reason, time.perf_counter() - t0, time.process_time() - c0))
