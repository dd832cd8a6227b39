"""Token statistics benchmark: steer's chunked pass against a naive log_softmax, verl and TRL.

What is measured, per vocabulary size V, logits dtype and variant, on the same inputs
(``N`` tokens, logits ~ 3 * N(0, 1), fixed seed):

- ``fwd``: time of one call that returns log pi(o) and the entropy H for every token;
- ``fwd+bwd``: the call plus ``(logp + H).sum().backward()`` (gradient w.r.t. the logits, or
  w.r.t. hidden/weight for the hidden-state path);
- peak extra memory: every (variant, V, dtype) runs in a fresh subprocess. The inputs are
  allocated (and written) first; then the kernel's resident-set high-water mark is reset to the
  current RSS (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) and the RSS is the baseline. After
  the first timed forward, ``VmHWM - baseline`` from ``/proc/self/status`` is the ``fwd`` peak; the
  mark is reset again before the first forward+backward, whose peak includes the gradient itself
  (N x V in the logits' dtype, or the hidden/weight gradients), which every variant must hold.
  So the numbers are "peak resident growth over the inputs", in MiB (``ru_maxrss`` reads the same
  mark). Without the reset, transient memory from imports and input creation hides part of the
  growth, which an earlier version of this benchmark under-reported. ``peak_fwd_warm_mib`` (JSON
  only) is the same for the second forward call, without first-call costs such as code pages of
  lazily used kernels. Workers run with
  ``MALLOC_MMAP_THRESHOLD_=131072`` so that freed blocks leave the resident set at once.

Variants:

- ``steer``: ``token_stats_from_logits(..., with_sums=False)`` (the same two outputs as the peers);
- ``steer+sums``: the same plus sum p^2 and sum p^2 log p (what the ``exact`` estimator needs);
- ``steer@R`` (only when asked for with ``--variants``): ``steer`` with ``chunk_size=R`` rows;
- ``naive``: ``log_softmax(logits.float())``, gather, and ``-(exp(l) * l).sum(-1)`` on all of (N, V);
- ``verl``: ``verl.utils.torch_functional.logprobs_from_logits`` + ``entropy_from_logits_with_chunking``
  on (N, V) logits, as verl's actor calls them after removing padding (no flash-attn on CPU, so
  verl falls back to its row-wise ``logprobs_from_logits_v2``);
- ``trl``: ``trl.trainer.utils.selective_log_softmax`` + ``entropy_from_logits`` on (B, T, V)
  logits (B = 8), as TRL's GRPO trainer calls them (no Triton on CPU, so the PyTorch paths);
- hidden-state path at d = 1024: ``steer-hidden`` (``token_stats_from_hidden``, logits never
  materialised) against ``matmul+steer`` (``hidden @ weight.T`` materialised, then the logits path);
  ``steer-hidden-mm16`` is ``steer-hidden`` with ``matmul_dtype`` = the inputs' dtype (bf16 GEMMs).

Run: ``/work/main/.venv-bench/bin/python -m benchmarks.bench_token_stats`` (``--quick`` for a smoke
run). The peers that are not installed are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SEED = 1234
LOGIT_SCALE = 3.0


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak() -> float:
    """Reset the resident-set high-water mark to the current RSS (Linux clear_refs '5'); return RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mib("VmRSS")


def _peak_mib() -> float:
    return _status_mib("VmHWM")


def _mem_available_mib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("inf")


# ------------------------------------------------------------------------------------------------
# worker side (one fresh process per variant / V / dtype)


def _make_inputs(torch, n: int, v: int, dtype, hidden_d: int | None):
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, v, (n,), generator=g)
    if hidden_d is None:
        logits = torch.empty(n, v, dtype=dtype)
        step = max(1, (1 << 22) // v)
        for s in range(0, n, step):  # fill in chunks: no full float32 temporary for bf16
            logits[s : s + step] = torch.randn(min(step, n - s), v, generator=g) * LOGIT_SCALE
        return {"logits": logits, "ids": ids}
    hidden = torch.randn(n, hidden_d, generator=g).to(dtype)
    weight = torch.empty(v, hidden_d, dtype=dtype)
    step = max(1, (1 << 22) // hidden_d)
    for s in range(0, v, step):
        weight[s : s + step] = torch.randn(min(step, v - s), hidden_d, generator=g) * (
            LOGIT_SCALE / hidden_d**0.5
        )
    return {"hidden": hidden, "weight": weight, "ids": ids}


def _variant_fn(name: str, torch, inp: dict):
    """A callable returning (logp, entropy) for the variant, and the tensors that need grads."""
    import torch.nn.functional as F

    if name in ("steer", "steer+sums") or name.startswith("steer@"):
        from steer.core.stats import token_stats_from_logits

        sums = name == "steer+sums"
        rows = int(name.split("@", 1)[1]) if "@" in name else None  # "steer@R": R rows per chunk

        def f():
            st = token_stats_from_logits(inp["logits"], inp["ids"], with_sums=sums, chunk_size=rows)
            return st.logp, st.entropy

        return f, [inp["logits"]]
    if name == "naive":

        def f():
            l = F.log_softmax(inp["logits"].float(), dim=-1)
            lp = l.gather(-1, inp["ids"].unsqueeze(-1)).squeeze(-1)
            h = -(l.exp() * l).sum(-1)
            return lp, h

        return f, [inp["logits"]]
    if name == "verl":
        from verl.utils.torch_functional import entropy_from_logits_with_chunking, logprobs_from_logits

        def f():
            lp = logprobs_from_logits(inp["logits"], inp["ids"])
            h = entropy_from_logits_with_chunking(inp["logits"])
            return lp, h

        return f, [inp["logits"]]
    if name == "trl":
        from trl.trainer.utils import entropy_from_logits, selective_log_softmax

        b = 8
        n, v = inp["logits"].shape

        def f():
            x = inp["logits"].view(b, n // b, v)
            lp = selective_log_softmax(x, inp["ids"].view(b, n // b))
            h = entropy_from_logits(x)
            return lp.reshape(-1), h.reshape(-1)

        return f, [inp["logits"]]
    if name == "steer-hidden":
        from steer.core.stats import token_stats_from_hidden

        def f():
            st = token_stats_from_hidden(inp["hidden"], inp["weight"], inp["ids"], with_sums=False)
            return st.logp, st.entropy

        return f, [inp["hidden"], inp["weight"]]
    if name == "steer-hidden-mm16":
        from steer.core.stats import token_stats_from_hidden

        def f():
            st = token_stats_from_hidden(
                inp["hidden"], inp["weight"], inp["ids"], with_sums=False, matmul_dtype=inp["hidden"].dtype
            )
            return st.logp, st.entropy

        return f, [inp["hidden"], inp["weight"]]
    if name == "matmul+steer":
        from steer.core.stats import token_stats_from_logits

        def f():
            logits = inp["hidden"] @ inp["weight"].t()
            st = token_stats_from_logits(logits, inp["ids"], with_sums=False)
            return st.logp, st.entropy

        return f, [inp["hidden"], inp["weight"]]
    raise ValueError(f"unknown variant {name!r}")


def _worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    dtype = getattr(torch, spec["dtype"])
    inp = _make_inputs(torch, spec["n"], spec["v"], dtype, spec.get("hidden_d"))
    try:
        f, params = _variant_fn(spec["variant"], torch, inp)
    except ImportError as e:
        return {"skipped": f"not installed: {e}"}
    import gc

    gc.collect()
    base = _reset_peak()
    out: dict = {"baseline_rss_mib": base}
    times, cpu = [], []
    with torch.no_grad():
        for i in range(spec["reps_fwd"]):
            if i == 1:  # second call: without first-call costs (lazily loaded kernels, thread pools)
                gc.collect()
                base = _reset_peak()
            t0, c0 = time.perf_counter(), time.process_time()
            lp, h = f()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if i == 0:
                out["peak_fwd_mib"] = _peak_mib() - base
                out["finite"] = bool(torch.isfinite(lp).all() and torch.isfinite(h).all())
            elif i == 1:
                out["peak_fwd_warm_mib"] = _peak_mib() - base
            del lp, h
    out["fwd_s"] = times
    out["fwd_cpu_s"] = cpu
    if spec["reps_bwd"] > 0:
        for p in params:
            p.requires_grad_(True)
        times, cpu = [], []
        gc.collect()
        base = _reset_peak()
        for i in range(spec["reps_bwd"]):
            for p in params:
                p.grad = None
            t0, c0 = time.perf_counter(), time.process_time()
            lp, h = f()
            (lp.sum() + h.sum()).backward()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if i == 0:
                out["peak_fwdbwd_mib"] = _peak_mib() - base
            del lp, h
        out["fwdbwd_s"] = times
        out["fwdbwd_cpu_s"] = cpu
    return out


# ------------------------------------------------------------------------------------------------
# driver side


def _estimate_peak_mib(
    variant: str, n: int, v: int, elem: int, hidden_d: int | None, backward: bool = True
) -> float:
    """Rough upper estimate of what a variant needs (inputs + work), to skip what cannot fit."""
    mib = 1 << 20
    full32 = n * v * 4 / mib
    inputs = n * v * elem / mib if hidden_d is None else (n + v) * hidden_d * elem / mib
    work = {
        "naive": (6 if backward else 4) * full32,
        "verl": 3 * full32,
        "trl": 3 * full32,
        "matmul+steer": 2.5 * full32,
    }.get(variant, 0.3 * full32)
    return inputs * 2 + work


def _run_one(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_token_stats", "--worker", json.dumps(spec)]
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    # Fixed mmap threshold: glibc then returns every freed block >= 128 KiB to the OS at once, so
    # the resident set follows live memory (otherwise freed blocks stay resident in the heap and a
    # later peak that reuses them is invisible to VmHWM). Same setting for every variant.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"skipped": f"failed (rc={proc.returncode}): {' | '.join(tail)}"}
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"skipped": "no result line"}


def _fmt_t(xs) -> str:
    if not xs:
        return "-"
    return f"{min(xs):.3f}" if len(xs) == 1 else f"{min(xs):.3f} (med {statistics.median(xs):.3f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--vocab", type=int, nargs="+", default=[32768, 151936])
    ap.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--variants", nargs="+", default=["steer", "steer+sums", "naive", "verl", "trl"])
    ap.add_argument("--hidden-d", type=int, default=1024)
    ap.add_argument("--hidden-vocab", type=int, nargs="+", default=[32768, 151936])
    ap.add_argument("--no-hidden", action="store_true")
    ap.add_argument("--no-logits", action="store_true", help="only the hidden-state path")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (smoke test)")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in each worker (default 1: on a shared, loaded machine multi-threaded "
        "timings mostly measure scheduling waits)",
    )
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    if args.worker:
        res = _worker(json.loads(args.worker))
        print("RESULT " + json.dumps(res))
        return 0

    if args.quick:
        args.n, args.vocab, args.hidden_vocab, args.hidden_d = 256, [4096], [4096], 128

    runs = []
    for v in [] if args.no_logits else args.vocab:
        for dt in args.dtype:
            for var in args.variants:
                big = v * args.n > 200_000_000
                # The naive full-vocabulary backward at V = 151936 needs > 12 GiB: forward only there.
                reps_bwd = (0 if var == "naive" else 1) if big else 3
                runs.append(
                    dict(variant=var, n=args.n, v=v, dtype=dt, reps_fwd=2 if big else 3, reps_bwd=reps_bwd)
                )
    if not args.no_hidden:
        for v in args.hidden_vocab:
            for dt in args.dtype:
                hvars = ["steer-hidden", "matmul+steer"] + (["steer-hidden-mm16"] if dt != "float32" else [])
                for var in hvars:
                    big = v * args.n > 200_000_000
                    if big and dt != "float32" and not args.quick:
                        continue  # bounded run time: the big-vocabulary hidden path in float32 only
                    runs.append(
                        dict(
                            variant=var,
                            n=args.n,
                            v=v,
                            dtype=dt,
                            hidden_d=args.hidden_d,
                            reps_fwd=1 if big else 2,
                            reps_bwd=1 if big else 2,
                        )
                    )
    if args.quick:
        for r in runs:
            r["reps_fwd"] = r["reps_bwd"] = 1

    for r in runs:
        r["threads"] = args.threads
    results = []
    t_start = time.perf_counter()
    for spec in runs:
        elem = 2 if spec["dtype"] in ("bfloat16", "float16") else 4
        need = _estimate_peak_mib(
            spec["variant"], spec["n"], spec["v"], elem, spec.get("hidden_d"), spec["reps_bwd"] > 0
        )
        avail = _mem_available_mib()
        if need > 0.8 * avail:
            res = {"skipped": f"needs about {need / 1024:.1f} GiB, {avail / 1024:.1f} GiB available"}
        else:
            res = _run_one(spec, args.timeout)
        results.append({**spec, **res})
        tag = res.get("skipped") or (
            f"fwd {_fmt_t(res.get('fwd_s'))} s (cpu {_fmt_t(res.get('fwd_cpu_s'))}), "
            f"fwd+bwd {_fmt_t(res.get('fwdbwd_s'))} s (cpu {_fmt_t(res.get('fwdbwd_cpu_s'))}), "
            f"peak {res.get('peak_fwd_mib', 0):.0f}/{res.get('peak_fwdbwd_mib', 0):.0f} MiB"
        )
        print(f"V={spec['v']:>6} {spec['dtype']:8s} {spec['variant']:13s} {tag}", flush=True)
    total = time.perf_counter() - t_start

    md = [
        f"N = {args.n} tokens, logits = {LOGIT_SCALE} * N(0, 1), torch threads per worker = {args.threads}. Times in seconds: the minimum over the "
        "repetitions (median in brackets when there were several); wall-clock and the process's CPU time "
        "(time.process_time; with one thread it excludes the time the worker waited for a core on a "
        "shared machine, so it is the steadier number). Peak = growth of the process's "
        "resident-set high-water mark (VmHWM, reset after allocating the inputs) over the allocated inputs, in MiB, each variant in a "
        "fresh process; the fwd+bwd peak includes the gradient itself (N x V in the logits' dtype for "
        "the logits path). See the module docstring of benchmarks/bench_token_stats.py for the method.",
        "",
        "| V | dtype | variant | fwd wall s | fwd CPU s | fwd+bwd wall s | fwd+bwd CPU s | peak fwd MiB | peak fwd+bwd MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name = r["variant"] + (f" (d={r['hidden_d']})" if r.get("hidden_d") else "")
        if "skipped" in r:
            md.append(f"| {r['v']} | {r['dtype']} | {name} | skipped: {r['skipped']} | | | | | |")
            continue
        md.append(
            f"| {r['v']} | {r['dtype']} | {name} | {_fmt_t(r.get('fwd_s'))} | {_fmt_t(r.get('fwd_cpu_s'))} "
            f"| {_fmt_t(r.get('fwdbwd_s'))} | {_fmt_t(r.get('fwdbwd_cpu_s'))} "
            f"| {r.get('peak_fwd_mib', float('nan')):.0f} | {r.get('peak_fwdbwd_mib', float('nan')):.0f} |"
        )
    md.append("")
    md.append(f"Total wall time of the run: {total:.0f} s.")
    if not args.no_write and not args.quick:
        from benchmarks.common import write_results

        path = write_results(
            "token_stats",
            "Token statistics: logp + entropy from logits and from hidden states",
            "\n".join(md),
            {"n": args.n, "results": results, "total_s": total},
        )
        print(f"wrote {path}")
    else:
        print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
