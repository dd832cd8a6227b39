"""Process pool for answer verification with a hard wall-clock limit per item.

Design
------
* ``num_workers`` worker PROCESSES (never threads: math-verify's signal timeouts raise there and
  a hung thread cannot be stopped). Default start method ``fork`` (POSIX): the parent imports the
  scorers and warms sympy/antlr once (about 1-2 s) before the first fork, so every worker,
  including a replacement, starts warm in milliseconds, and no ``if __name__ == "__main__"``
  guard is needed in the host script. The children only run the scorers (no torch), which is what
  makes forking a host that holds torch threads safe here. ``forkserver`` (the fork server
  imports and warms the scorers, ``steer.rewards._preload``) and ``spawn`` are selectable; they
  re-import the host's ``__main__`` in the children, so the host needs the main guard.
* Each worker has its own pipe. The parent sends a chunk of items; the worker answers one message
  per item. The parent knows which item a worker is on and when it started (the arrival time of the
  previous answer), so the limit is enforced **per item**: a worker whose current item runs past
  ``timeout`` is killed with SIGKILL and replaced; that item scores wrong with reason
  ``"timeout"``; the unfinished rest of the chunk goes back to the queue.
* A worker that dies (segfault, OOM kill) gives its current item ``"error: worker died ..."``; the
  rest of its chunk is requeued and the worker replaced. Scorer exceptions give ``"error: ..."``.
* Items are grouped by (scorer, gold) before they are cut into chunks, so the k responses to
  one problem usually reach one worker, which parses that gold once (the scorers cache parsed
  golds).
* Responses are cut to their last ``max_chars`` characters before they are sent (answers are at
  the end). Workers run with an address-space limit (``mem_limit_mb``).
* Verdicts are cached in the parent by ``(scorer, cut response, gold)`` (LRU, ``cache_size``), and
  duplicate items inside a batch are verified once. Timeouts and errors are not cached: the
  next batch verifies the item again.
* Isolation: no item can change how another is scored. The scorers never evaluate answer text
  as code; beyond that, a worker whose item raised (``"error: ..."``) is replaced like one that
  timed out, and the rest of its chunk goes to a fresh worker.
* ``score_batch`` is serialised by a lock, so the pool may be shared by threads of the host; the
  host's SIGALRM handler is never touched.
"""

from __future__ import annotations

import atexit
import math
import multiprocessing as mp
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import wait

from steer.rewards.extract import DEFAULT_MAX_CHARS, truncate_tail
from steer.rewards.registry import get_scorer

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEM_LIMIT_MB = 4096


@dataclass(frozen=True)
class Verdict:
    """Outcome of one verification.

    ``score`` is the reward value (1/0, or +1/-1 for dapo); ``reason`` is ``"ok"``,
    ``"mismatch"``, ``"no answer"``, ``"rejected: ..."`` (an answer judged wrong before parsing:
    ``steer.rewards.extract.hopeless_answer``), ``"timeout"`` or ``"error: ..."``. A timeout or
    an error scores like a wrong answer (:func:`is_verify_error` tells them apart); ``seconds`` is the
    worker-side wall time (the time until the kill for a timeout), ``cpu_seconds`` the worker's
    CPU time for the item.
    """

    correct: bool
    score: float
    pred: str | None
    reason: str
    scorer: str
    seconds: float
    cached: bool = False
    cpu_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScoreItem:
    """One verification request: a response, its gold answer, and the scorer's name."""

    response: str
    gold: str
    scorer: str = "math_verify"


class _Worker:
    __slots__ = ("proc", "conn", "ready", "pending", "t_item", "t_spawn")

    def __init__(self, proc, conn):
        self.proc = proc
        self.conn = conn
        self.ready = False
        self.pending: deque = deque()
        self.t_item = 0.0
        self.t_spawn = time.monotonic()


def is_verify_error(v: Verdict) -> bool:
    """True when the verifier failed on the item (a timeout, a worker death, a scorer exception)
    rather than judging the answer; such an item scores like a wrong answer everywhere (trainer,
    verl, TRL, ``steer eval``) and is counted in ``reward/verify_error_frac``."""
    return v.reason == "timeout" or v.reason.startswith("error")


def verify_error_frac(verdicts: Sequence[Verdict]) -> float:
    """The fraction of ``verdicts`` that are verifier failures (:func:`is_verify_error`); 0 for none."""
    return sum(map(is_verify_error, verdicts)) / len(verdicts) if verdicts else 0.0


def is_final(v: Verdict) -> bool:
    """A verdict about the answer itself (``ok``, ``mismatch``, ``no answer``), not a transient
    failure (``timeout``, ``error: ...``): only final verdicts are cached."""
    return not (v.reason == "timeout" or v.reason.startswith("error"))


def _default_start_method() -> str:
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


class VerifierPool:
    """A pool of verification worker processes (design in the module docstring)."""

    def __init__(
        self,
        num_workers: int | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_chars: int = DEFAULT_MAX_CHARS,
        chunk_size: int | None = None,
        start_method: str | None = None,
        mem_limit_mb: int | None = DEFAULT_MEM_LIMIT_MB,
        cache_size: int = 200_000,
        startup_timeout: float = 120.0,
    ):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.num_workers = int(num_workers or min(os.cpu_count() or 1, 8))
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.timeout = float(timeout)
        self.max_chars = int(max_chars)
        self.chunk_size = chunk_size
        self.start_method = start_method or _default_start_method()
        self.mem_limit_mb = mem_limit_mb
        self.cache_size = int(cache_size)
        self.startup_timeout = float(startup_timeout)
        self._ctx = mp.get_context(self.start_method)
        if self.start_method == "forkserver":
            self._ctx.set_forkserver_preload(["steer.rewards._preload"])
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._owner_pid = os.getpid()
        self._closed = False
        self.stats = {
            "timeouts": 0,
            "deaths": 0,
            "respawns": 0,
            "recycled": 0,
            "verified": 0,
            "cache_hits": 0,
        }
        atexit.register(self.close)

    # -- worker management -------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        from steer.rewards._worker import worker_main

        if self.start_method == "fork":
            from steer.rewards._worker import warm_up

            warm_up()
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=worker_main, args=(child, self.mem_limit_mb), daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _kill(self, w: _Worker) -> None:
        try:
            w.proc.kill()
        except Exception:
            pass
        w.proc.join(5)
        try:
            w.conn.close()
        except Exception:
            pass

    def _ensure_workers(self) -> None:
        if os.getpid() != self._owner_pid:  # used after a fork of the host: start afresh
            self._workers = []
            self._owner_pid = os.getpid()
            self._lock = threading.Lock()
        if self._closed:
            raise RuntimeError("VerifierPool is closed")
        self._workers = [w for w in self._workers if w.proc.is_alive()]
        while len(self._workers) < self.num_workers:
            self._workers.append(self._spawn())

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if self._closed or os.getpid() != self._owner_pid:
            return
        self._closed = True
        for w in self._workers:
            try:
                w.conn.send(None)
            except Exception:
                pass
        for w in self._workers:
            w.proc.join(1)
            if w.proc.is_alive():
                self._kill(w)
        self._workers = []

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- scoring -----------------------------------------------------------------------------
    def _verdict(self, scorer: str, ok: bool, pred, reason: str, secs: float, cpu: float = 0.0) -> Verdict:
        spec = get_scorer(scorer)
        score = spec.reward_correct if ok else spec.reward_wrong
        return Verdict(bool(ok), float(score), pred, reason, scorer, float(secs), False, float(cpu))

    def score(self, response: str, gold: str, scorer: str = "math_verify") -> Verdict:
        """Verify one item (through the pool)."""
        return self.score_batch([ScoreItem(response, gold, scorer)])[0]

    def score_batch(self, items: Iterable[ScoreItem | tuple | dict]) -> list[Verdict]:
        """Verify many items; returns one :class:`Verdict` per item, in order.

        An item is a :class:`ScoreItem`, a ``(response, gold[, scorer])`` tuple or a dict with
        ``response``, ``gold`` and optionally ``scorer``. Bad items raise ValueError naming the
        index.
        """
        norm: list[tuple[str, str, str]] = []
        for i, it in enumerate(items):
            if isinstance(it, ScoreItem):
                r, g, s = it.response, it.gold, it.scorer
            elif isinstance(it, dict):
                r, g, s = it.get("response"), it.get("gold"), it.get("scorer", "math_verify")
            elif isinstance(it, (tuple, list)) and len(it) in (2, 3):
                r, g = it[0], it[1]
                s = it[2] if len(it) == 3 else "math_verify"
            else:
                raise ValueError(f"item {i}: expected ScoreItem, (response, gold[, scorer]) or dict")
            if r is None:
                r = ""
            if not isinstance(r, str):
                raise ValueError(f"item {i}: response must be a str, got {type(r).__name__}")
            if g is None:
                raise ValueError(f"item {i}: gold answer is None")
            get_scorer(s)  # validates the name
            norm.append((truncate_tail(r, self.max_chars), str(g), s))
        with self._lock:
            return self._score_locked(norm)

    def _score_locked(self, norm: list[tuple[str, str, str]]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(norm)
        todo: dict[tuple, list[int]] = {}
        for i, (r, g, s) in enumerate(norm):
            key = (s, r, g)
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                out[i] = Verdict(**{**asdict(hit), "cached": True})
                self.stats["cache_hits"] += 1
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            keys = list(todo)
            results = self._run([(j, k[0], k[1], k[2]) for j, k in enumerate(keys)])
            for j, k in enumerate(keys):
                v = results[j]
                if is_final(v):
                    self._cache[k] = v
                for i in todo[k]:
                    out[i] = v
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out  # type: ignore[return-value]

    def _run(self, tasks: list[tuple[int, str, str, str]]) -> list[Verdict]:
        """Run ``(idx, scorer, response, gold)`` tasks through the workers.

        If the call is interrupted (KeyboardInterrupt, a start failure), workers still busy
        with this batch are killed so that no stale answer can reach a later batch.
        """
        try:
            return self._run_inner(tasks)
        except BaseException:
            for w in list(self._workers):
                if w.pending or not w.ready:
                    self._kill(w)
                    self._workers.remove(w)
            raise

    def _run_inner(self, tasks: list[tuple[int, str, str, str]]) -> list[Verdict]:
        self._ensure_workers()
        n = len(tasks)
        # small chunks (about 8 per worker, at most 32 items) keep stragglers short
        csize = self.chunk_size or max(1, min(32, math.ceil(n / (8 * self.num_workers))))
        # items of one gold go to the same chunk, so a worker parses that gold once (its cache)
        ordered = sorted(tasks, key=lambda t: (t[1], t[3]))
        queue: deque = deque(ordered[i : i + csize] for i in range(0, n, csize))
        results: dict[int, Verdict] = {}
        scorer_of = {t[0]: t[1] for t in tasks}
        while len(results) < n:
            self._dispatch(queue)
            objs, ready_objs = self._wait_any()
            dead, recycle = self._drain(objs, ready_objs, results, scorer_of)
            self._reap(queue, results, scorer_of, dead, recycle)
        return [results[i] for i in range(n)]

    @staticmethod
    def _requeue_rest(w: _Worker, queue: deque) -> None:
        """Put the items a worker has not answered back at the head of the queue."""
        if w.pending:
            queue.appendleft(list(w.pending))
        w.pending = deque()

    def _replace(self, gone: list[_Worker]) -> None:
        """Swap each (already killed) worker of ``gone`` for a fresh one."""
        for w in gone:
            self._workers.remove(w)
            self._workers.append(self._spawn())
            self.stats["respawns"] += 1

    def _dispatch(self, queue: deque) -> None:
        """Hand a chunk to each idle ready worker; one that went away while idle is replaced and
        its chunk stays queued."""
        broken: list[_Worker] = []
        for w in self._workers:
            if w.ready and not w.pending and queue:
                chunk = queue.popleft()
                try:
                    w.conn.send([(t[0], t[1], t[2], t[3]) for t in chunk])
                except (OSError, ValueError):  # the worker went away while idle
                    queue.appendleft(chunk)
                    broken.append(w)
                    continue
                w.pending = deque(chunk)
                w.t_item = time.monotonic()
        for w in broken:
            self._kill(w)
            self._replace([w])

    def _wait_any(self) -> tuple[dict, list]:
        """Wait for a message or a process end from any worker, at most until the nearest item
        deadline or start deadline; ``(connection or sentinel -> worker, the ready ones)``."""
        deadline = math.inf
        for w in self._workers:
            if w.pending:
                deadline = min(deadline, w.t_item + self.timeout)
            elif not w.ready:
                deadline = min(deadline, w.t_spawn + self.startup_timeout)
        wait_s = None if deadline == math.inf else max(0.0, deadline - time.monotonic())
        objs = {}
        for w in self._workers:
            objs[w.conn] = w
            objs[w.proc.sentinel] = w
        return objs, wait(list(objs), timeout=wait_s)

    def _drain(self, objs: dict, ready_objs: list, results: dict, scorer_of: dict) -> tuple[set, set]:
        """Read every answer the ready workers sent; ``(ids of workers whose process ended, ids of
        workers to recycle because a scorer raised)``. An answer for another item than the one a
        worker is on is ignored."""
        dead: set[int] = set()
        drained: set[int] = set()
        recycle: set[int] = set()
        for obj in ready_objs:
            w = objs[obj]
            if obj is not w.conn:
                dead.add(id(w))  # its process ended; read what it sent before dying first
            if id(w) in drained:
                continue
            drained.add(id(w))
            try:
                while w.conn.poll():
                    msg = w.conn.recv()
                    if msg[0] == "ready":
                        w.ready = True
                        continue
                    idx, ok, pred, reason, secs, cpu = msg
                    if not w.pending or w.pending[0][0] != idx:
                        continue  # not the item this worker is on: ignore
                    w.pending.popleft()
                    results[idx] = self._verdict(scorer_of[idx], ok, pred, reason, secs, cpu)
                    self.stats["verified"] += 1
                    w.t_item = time.monotonic()
                    if reason.startswith("error"):
                        # a scorer raised: whatever it left behind must not reach another
                        # item, so the worker is replaced and the rest of its chunk requeued
                        recycle.add(id(w))
                        break
            except (EOFError, OSError):
                dead.add(id(w))
        return dead, recycle

    def _reap(self, queue: deque, results: dict, scorer_of: dict, dead: set, recycle: set) -> None:
        """Replace recycled, dead and timed-out workers: the item a worker was on scores
        ``timeout`` (or ``error: worker died``), the rest of its chunk is requeued. A worker that
        fails to start, or does not start in time, is an error."""
        now = time.monotonic()
        replaced: list[_Worker] = []
        for w in self._workers:
            if id(w) in recycle and id(w) not in dead:
                self.stats["recycled"] += 1
                self._requeue_rest(w, queue)
                self._kill(w)
                replaced.append(w)
                continue
            timed_out = bool(w.pending) and now - w.t_item >= self.timeout
            slow_start = not w.ready and not w.pending and now - w.t_spawn >= self.startup_timeout
            if id(w) in dead or not w.proc.is_alive() or timed_out:
                if w.pending:
                    idx = w.pending.popleft()[0]
                    if timed_out and id(w) not in dead and w.proc.is_alive():
                        self.stats["timeouts"] += 1
                        reason = "timeout"
                    else:
                        self.stats["deaths"] += 1
                        reason = f"error: worker died (exit code {w.proc.exitcode})"
                    results[idx] = self._verdict(scorer_of[idx], False, None, reason, now - w.t_item)
                elif not w.ready:
                    self._kill(w)
                    raise RuntimeError(f"verification worker failed to start (exit code {w.proc.exitcode})")
                self._requeue_rest(w, queue)
                self._kill(w)
                replaced.append(w)
            elif slow_start:
                self._kill(w)
                raise RuntimeError(f"verification worker did not start within {self.startup_timeout} s")
        self._replace(replaced)


_DEFAULT_POOL: VerifierPool | None = None
_DEFAULT_LOCK = threading.Lock()


def get_default_pool(**kwargs) -> VerifierPool:
    """The process-wide pool (created on first use; ``kwargs`` apply only to its creation)."""
    global _DEFAULT_POOL
    with _DEFAULT_LOCK:
        if _DEFAULT_POOL is None or _DEFAULT_POOL._closed or _DEFAULT_POOL._owner_pid != os.getpid():
            _DEFAULT_POOL = VerifierPool(**kwargs)
        return _DEFAULT_POOL


def score_batch(items: Sequence[ScoreItem | tuple | dict], pool: VerifierPool | None = None) -> list[Verdict]:
    """Verify ``items`` with ``pool`` (default: the process-wide pool)."""
    return (pool or get_default_pool()).score_batch(items)
