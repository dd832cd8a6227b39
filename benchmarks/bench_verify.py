"""Verification throughput and latency of the reward pool.

MATH-500-style responses: each MATH-500 gold answer embedded at the end of a realistic
reasoning text (inline ``$...$`` math taken from the problem, a few equations, a final
``\\boxed{}``), half with the right answer and half with another problem's answer. Every
response is distinct (no cache hits). Batches of 500 go through ``VerifierPool.score_batch`` with
2 worker processes and the default hard limit (5 s per item). Reported: verifications per second
(warm pool), per-item worker time p50/p99/max, batch latency, timeouts, and the same for the
AIME-style integer answers and for the DAPO and Qwen scorers.

Olympiad-style expression answers (``--expr``, the hard case): the golds of olympiadbench and
MATH-500 that are not plain integers (intervals, tuples, radicals, polynomials, equations), 64
problems x 8 responses per batch of 512 (as in a GRPO step; also each problem once per batch, the
harder case for the per-worker gold cache), each response about 500 characters
ending in ``\\boxed{}``: half right (the gold string itself, the gold re-typeset with ``\\dfrac``
and spaces, or its top-level terms reordered) and half wrong (another problem's gold, or the
gold with one digit changed, a near miss).

Run: ``python -m benchmarks.bench_verify [--quick] [--workers 2] [--batches 4] [--only-expr]``.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time


def _responses(probs, n: int, seed: int, style: str) -> list[tuple[str, str]]:
    from steer.rewards.extract import clean_gold

    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = probs[i % len(probs)]
        right = i % 2 == 0
        ans = p.gold if right else probs[(i + 1 + rng.randrange(len(probs) - 1)) % len(probs)].gold
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        body = (
            f"Let's solve this step by step (attempt {i}).\n\n{p.problem[:400]}\n\n"
            f"First, note that $x = {a}$ and $y = \\frac{{{b}}}{{{a}}}$, so $x y = {b}$. "
            f"Substituting, we get $$ {a} + {b} = {a + b}. $$ "
            f"Checking the boundary cases $n = 1, 2, \\ldots, {a % 7 + 2}$ gives nothing new.\n\n"
        )
        if style == "answer_line":
            out.append((body + f"Answer: {clean_gold(ans)}", p.gold))
        else:
            out.append((body + f"Therefore, the final answer is $\\boxed{{{clean_gold(ans)}}}$.", p.gold))
    return out


_INT_RE = re.compile(r"-?\d+")


def expression_golds():
    """(problem, cleaned gold) for the olympiadbench and MATH-500 golds that are not integers."""
    from steer.data import load_benchmark
    from steer.rewards.extract import clean_gold

    out = []
    for name in ("olympiad", "math500"):
        for p in load_benchmark(name):
            g = clean_gold(p.gold)
            if not _INT_RE.fullmatch(g.replace(",", "")):
                out.append((p, g))
    return out


def _top_level_terms(g: str) -> list[str]:
    depth, parts, cur = 0, [], ""
    for i, ch in enumerate(g):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        if ch == "+" and depth == 0 and i > 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return parts


def _equivalent(g: str, rng) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return g
    if kind == 1:
        t = _top_level_terms(g)
        if len(t) >= 2 and not any(c in g for c in "=,<>\\{"):
            return "+".join(t[1:] + t[:1])
    return g.replace("\\frac", "\\dfrac").replace("+", " + ")


def _near_miss(g: str, rng) -> str:
    ds = [m.start() for m in re.finditer(r"\d", g)]
    if not ds:
        return g + "+1"
    i = rng.choice(ds)
    return g[:i] + str((int(g[i]) + rng.randint(1, 8)) % 10) + g[i + 1 :]


def expression_mix(n: int, seed: int = 0, per_problem: int = 8) -> list[tuple[str, str]]:
    """``n`` (response, gold) items: ``per_problem`` responses to each problem in turn."""
    rng = random.Random(seed)
    golds = expression_golds()
    order = list(range(len(golds)))
    rng.shuffle(order)
    items = []
    for i in range(n):
        p, g = golds[order[(i // per_problem) % len(order)]]
        if i % 2 == 0:
            ans = _equivalent(g, rng)
        elif i % 4 == 1:
            ans = golds[rng.randrange(len(golds))][1]
        else:
            ans = _near_miss(g, rng)
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        body = (
            f"Let's solve this step by step (attempt {i}).\n\n{p.problem[:300]}\n\n"
            f"First, note that $x = {a}$ and $y = \\frac{{{b}}}{{{a}}}$, so $x y = {b}$. "
            f"Substituting, we get $$ {a} + {b} = {a + b}. $$ "
        )
        items.append((body + f"Therefore, the final answer is $\\boxed{{{ans}}}$.", p.gold))
    return items


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _workers_cpu(pool) -> float | None:
    """CPU seconds used so far by the pool's worker processes, killed ones included: live
    workers from ``/proc/<pid>/stat``, ended (and reaped) ones from the children's rusage. A
    timed-out item reports no CPU time of its own (its worker is killed), so only this total
    shows what it cost; None where ``/proc`` is not there."""
    import os
    import resource

    try:
        tick = os.sysconf("SC_CLK_TCK")
        live = 0.0
        for w in pool._workers:
            with open(f"/proc/{w.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            live += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return live + ru.ru_utime + ru.ru_stime
    except (OSError, ValueError, AttributeError, IndexError):
        return None


def run_case(pool, items, scorer, batch):
    from steer.rewards import ScoreItem

    verdicts, batch_times = [], []
    w0 = _workers_cpu(pool)
    t0, c0 = time.perf_counter(), time.process_time()
    for s in range(0, len(items), batch):
        tb = time.perf_counter()
        verdicts += pool.score_batch([ScoreItem(r, g, scorer) for r, g in items[s : s + batch]])
        batch_times.append(time.perf_counter() - tb)
    dt = time.perf_counter() - t0
    parent_cpu = time.process_time() - c0
    w1 = _workers_cpu(pool)
    procs_cpu = None if w0 is None or w1 is None else w1 - w0
    secs = [v.seconds for v in verdicts]
    cpu = sum(v.cpu_seconds for v in verdicts)
    return {
        "cpu_ms_mean": 1e3 * cpu / len(verdicts),
        # all CPU of the worker processes over the case, killed workers (timeouts) included
        "worker_procs_cpu_ms": None if procs_cpu is None else 1e3 * procs_cpu / len(verdicts),
        "worker_procs_bound_per_s": (None if not procs_cpu else 2 * len(verdicts) / (procs_cpu + parent_cpu)),
        "cpu_bound_per_s": pool.num_workers * len(verdicts) / cpu if cpu > 0 else float("inf"),
        "parent_cpu_ms": 1e3 * parent_cpu / len(verdicts),
        # all work (workers + the parent's dispatch) shared by 2 cores
        "two_core_per_s": 2 * len(verdicts) / (cpu + parent_cpu) if cpu + parent_cpu > 0 else float("inf"),
        "items": len(items),
        "per_s": len(items) / dt,
        "p50_ms": 1e3 * statistics.median(secs),
        "p99_ms": 1e3 * _pct(secs, 0.99),
        "max_ms": 1e3 * max(secs),
        "batch_s_mean": statistics.mean(batch_times),
        "timeouts": sum(v.reason == "timeout" for v in verdicts),
        "errors": sum(v.reason.startswith("error") for v in verdicts),
        "correct_frac": sum(v.correct for v in verdicts) / len(verdicts),
        "cache_hits": sum(v.cached for v in verdicts),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=4, help="batches of --batch items per case")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true", help="one batch per case")
    ap.add_argument("--only-expr", action="store_true", help="only the olympiad-style expression cases")
    ap.add_argument("--name", default="verify", help="results file stem under benchmarks/results")
    args = ap.parse_args(argv)
    from benchmarks.common import write_results
    from steer.data import load_benchmark
    from steer.rewards import VerifierPool

    nb = 1 if args.quick else args.batches
    n = nb * args.batch
    math500 = load_benchmark("math500")
    aime = load_benchmark("aime24") + load_benchmark("aime25") + load_benchmark("amc23")
    t = time.perf_counter()
    pool = VerifierPool(args.workers, timeout=args.timeout)
    pool.score(r"\boxed{1}", "1")  # start + warm the workers
    start_s = time.perf_counter() - t
    expr_n = nb * 512
    cases = {
        "olympiad+math500 expressions, each problem once / math_verify": (
            expression_mix(expr_n, 13, per_problem=1),
            "math_verify",
        ),
        "olympiad+math500 expressions, each problem once / qwen": (
            expression_mix(expr_n, 14, per_problem=1),
            "qwen",
        ),
        "olympiad+math500 expressions, 8 per problem / math_verify": (
            expression_mix(expr_n, 10),
            "math_verify",
        ),
        "olympiad+math500 expressions, 8 per problem / qwen": (expression_mix(expr_n, 11), "qwen"),
        "olympiad+math500 expressions, 8 per problem / dapo": (expression_mix(expr_n, 12), "dapo"),
    }
    if not args.only_expr:
        cases.update(
            {
                "math500 / math_verify": (_responses(math500, n, 0, "boxed"), "math_verify"),
                "aime+amc integers (Answer: line) / math_verify": (
                    _responses(aime, n, 1, "answer_line"),
                    "math_verify",
                ),
                "math500 / qwen": (_responses(math500, n, 2, "boxed"), "qwen"),
                "math500 / dapo": (_responses(math500, n, 3, "boxed"), "dapo"),
            }
        )
    res = {}
    try:
        for name, (items, scorer) in cases.items():
            res[name] = run_case(pool, items, scorer, 512 if "expressions" in name else args.batch)
            r = res[name]
            print(
                f"{name:48s} {r['per_s']:8.0f}/s cpu-bound {r['two_core_per_s']:6.0f}/s p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms "
                f"max {r['max_ms']:.0f} ms timeouts {r['timeouts']}",
                flush=True,
            )
    finally:
        pool.close()
    limit_ms = 1e3 * args.timeout
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [
        "| case | items | verifications/s | worker CPU ms/item | parent CPU ms/item | CPU-bound rate on 2 cores | worker processes' CPU ms/item (timeouts included) | CPU-bound rate from it | p50 ms | p99 ms | max ms | batch of 500 (s) | timeouts | errors | correct |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def _fmt(x, spec):
        return "n/a" if x is None else format(x, spec)

    for name, r in res.items():
        rows.append(
            f"| {name} | {r['items']} | {r['per_s']:.0f} | {r['cpu_ms_mean']:.2f} | {r['parent_cpu_ms']:.2f} | {r['two_core_per_s']:.0f} | "
            f"{_fmt(r['worker_procs_cpu_ms'], '.2f')} | {_fmt(r['worker_procs_bound_per_s'], '.0f')} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f} | "
            f"{r['batch_s_mean']:.2f} | {r['timeouts']} | {r['errors']} | {100 * r['correct_frac']:.1f}% |"
        )
    body = (
        f"`python -m benchmarks.bench_verify{' --quick' if args.quick else ''}`: {args.workers} worker processes, "
        f"hard limit {args.timeout:g} s per item, batches of {args.batch}, distinct responses (no cache hits); "
        f"pool start + warm-up {start_s:.1f} s (not counted). Target: >= 500 verifications/s on 2 cores, no item "
        f"over the limit ({limit_ms:.0f} ms). Half of the responses carry the right answer. 1-minute load average at the "
        f"end: {load:.1f} (other jobs on the machine lower the wall-clock rate; the CPU-bound rate, "
        f"2 cores / (worker + parent CPU time per item), is what the pool's own work allows on 2 free cores; "
        f"the worker CPU per item is the sum the workers report per item, which is 0 for an item killed at the "
        f"limit, so the worker processes' own CPU over the case, killed ones included, is given beside it). "
        f"The {nb} batches cycle over the 500 problems, so from the second batch on the golds repeat (as with "
        f"k samples per problem); each response is new. The olympiad-style expression cases run in batches of "
        f"512 (64 problems x 8 responses; the batch column is then per 512).\n\n" + "\n".join(rows)
    )
    write_results(
        args.name, "Reward verification throughput (VerifierPool)", body, {"cases": res, "args": vars(args)}
    )
    print(body)
    worst = max(r["max_ms"] for r in res.values())
    return 0 if worst <= limit_ms + 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
