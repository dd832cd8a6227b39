"""CPU rollout speed: HF ``generate`` (the trainer's own ``generate_rollouts``) against a
sampling engine (vLLM's CPU build) on the same prompts and sampling settings.

    python -m benchmarks.bench_rollout --engine-python /work/venv-engines/bin/python \\
        [--batches 8 32 64] [--new-tokens 64 128] [--threads 2 1] [--rounds 2]

The engine lives in its own virtual environment (``--engine-python``): vLLM pins a newer
transformers than steer's. The prompts are the smol task's (``steer/configs/smol.yaml``: the
chat template of SmolLM2-135M-Instruct rendered by the trainer's own ``format_prompt``), each
sampled ``--group`` times (the GRPO group), so a batch of 32 is 4 prompts x 8 rollouts. Both
sides sample at temperature 1.0, top-p 1.0, no top-k, stop token ``<|im_end|>`` (the model's
stop set, ``steer.evaluation.generate.stop_token_ids``), at most ``max_new_tokens``, in float32.

For each thread count the two sides run in the order A B B A (``--rounds 2``; each run a fresh
process that loads the model once, warms up and then times every batch x length cell once),
so that the load of a shared machine hits both alike; the 1-minute load average is recorded
before every cell. tokens/s = valid response tokens (up to and including the stop token) /
wall time of the sampling call.

The engine worker also measures:

- weight sync: the time to push a full float32 state dict into the running engine
  (``load_weights`` on the engine's model, in process), and that the pushed weights take effect
  (greedy output changes with perturbed weights and comes back with the original ones); and the
  time to build the engine from the folder (what a reload would cost);
- semantics: the stop token is part of the response and ``finish`` is ``length`` exactly when
  ``max_new_tokens`` tokens were produced; and the engine's log-probabilities of its sampled
  tokens against the ones steer's trainer recomputes with torch on the same tokens
  (``response_token_stats``), which says whether both sample from the same distribution.

Finally the RL-step estimate: a measured step of ``steer train --config smol`` split into
rollout, old-policy forward and update (``--step-times``), with the rollout divided by the
measured speed-up and the weight sync added (:func:`step_speedup`).

Writes ``benchmarks/results/rollout.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: rollout / old-policy forward / update seconds of one ``steer train --config smol`` step
#: (4 prompts x 8 rollouts x at most 96 new tokens, 1 thread) measured on this project's machine
DEFAULT_STEP_TIMES = (26.0, 14.0, 46.0)


# ----------------------------------------------------------------------------- pure helpers


def abba_order(rounds: int) -> list[str]:
    """Run order of the two sides: ``hf`` (A) and ``engine`` (B), A B B A A B ... for
    ``rounds`` runs of each."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    out: list[str] = []
    for r in range(rounds):
        out += ["hf", "engine"] if r % 2 == 0 else ["engine", "hf"]
    return out


def step_speedup(rollout_s: float, rest_s: float, rollout_speedup: float, sync_s: float) -> float:
    """End-to-end speed-up of an RL step whose rollout (``rollout_s``) becomes
    ``rollout_speedup`` times faster at the cost of a weight sync (``sync_s``) every step, the
    rest of the step (``rest_s``: old-policy forward and update) unchanged."""
    if rollout_s < 0 or rest_s < 0 or sync_s < 0:
        raise ValueError("times must be >= 0")
    if rollout_speedup <= 0:
        raise ValueError(f"rollout_speedup must be > 0, got {rollout_speedup}")
    new = rollout_s / rollout_speedup + sync_s + rest_s
    return (rollout_s + rest_s) / new


def summarize(runs: list[dict]) -> dict:
    """Per (side, threads, batch, new_tokens): mean tokens/s over the runs, their spread, the
    mean seconds per call and the mean response length. ``runs`` are the workers' cell
    records."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["side"], r["threads"], r["batch"], r["new_tokens"]), []).append(r)
    out = {}
    for key, rs in sorted(groups.items()):
        tps = [r["tokens"] / r["seconds"] for r in rs]
        out["|".join(map(str, key))] = {
            "side": key[0],
            "threads": key[1],
            "batch": key[2],
            "new_tokens": key[3],
            "runs": len(rs),
            "tokens_per_s": statistics.fmean(tps),
            "tokens_per_s_min": min(tps),
            "tokens_per_s_max": max(tps),
            "seconds": statistics.fmean(r["seconds"] for r in rs),
            "mean_len": statistics.fmean(r["tokens"] / r["batch"] for r in rs),
            "frac_length": statistics.fmean(r["n_length"] / r["batch"] for r in rs),
            "load_avg": statistics.fmean(r["load_avg"] for r in rs),
        }
    return out


# ----------------------------------------------------------------------------- workers


def _load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return float("nan")


def _check_finish(token_lists: list[list[int]], finish: list[str], stops: list[int], max_new: int) -> int:
    """Number of responses that break the rules: ``stop`` ends with a stop token (included) and
    has no earlier one; ``length`` has exactly ``max_new`` tokens and no stop token."""
    bad = 0
    for toks, f in zip(token_lists, finish):
        n_stop = sum(t in stops for t in toks)
        if f == "stop":
            bad += not (toks and toks[-1] in stops and n_stop == 1)
        else:
            bad += not (len(toks) == max_new and n_stop == 0)
    return bad


def _worker_hf(spec: dict) -> list[dict]:
    import torch

    torch.set_num_threads(spec["threads"])
    from steer.evaluation.generate import stop_token_ids
    from steer.train.config import load_config
    from steer.train.rollout import generate_rollouts
    from steer.train.trainer import load_model_and_tokenizer

    cfg = load_config("smol")
    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(cfg, log=lambda *a: None)
    model.eval()
    load_s = time.perf_counter() - t0
    stops = stop_token_ids(tok, model)
    prompts, g = spec["prompts"], spec["group"]
    torch.manual_seed(spec["seed"])
    generate_rollouts(model, tok, prompts[:1], 2, max_new_tokens=8, max_prompt_tokens=64)  # warm-up
    out = []
    for b in spec["batches"]:
        for T in spec["new_tokens"]:
            la = _load()
            t0 = time.perf_counter()
            ro = generate_rollouts(
                model,
                tok,
                prompts[: b // g],
                g,
                temperature=spec["temperature"],
                top_p=spec["top_p"],
                top_k=0,
                max_new_tokens=T,
                max_prompt_tokens=64,
            )
            dt = time.perf_counter() - t0
            toks = [
                [t for t, m in zip(r, mm) if m]
                for r, mm in zip(ro.response_ids.tolist(), ro.response_mask.tolist())
            ]
            out.append(
                dict(
                    batch=b,
                    new_tokens=T,
                    seconds=dt,
                    tokens=int(ro.response_mask.sum()),
                    n_length=sum(f == "length" for f in ro.finish),
                    bad_finish=_check_finish(toks, ro.finish, stops, T),
                    load_avg=la,
                )
            )
            print(f"[hf t={spec['threads']}] b={b} T={T} {out[-1]['tokens'] / dt:.0f} tok/s", file=sys.stderr)
    return [dict(load_s=load_s)] + out


def _vllm_env(threads: int, bind: bool) -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB
    # vLLM pins its OpenMP threads to cores unless told "nobind"; torch (the HF side) does not pin
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{threads - 1}" if bind else "nobind"
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _worker_vllm(spec: dict) -> list[dict]:
    _vllm_env(spec["threads"], spec.get("bind", False))
    from vllm import LLM, SamplingParams

    folder, stops, g = spec["folder"], spec["stops"], spec["group"]
    t0 = time.perf_counter()
    llm = LLM(
        model=folder,
        dtype="float32",
        seed=spec["seed"],
        max_model_len=512,
        enforce_eager=spec.get("enforce_eager", True),
        generation_config="vllm",  # vLLM's neutral defaults, not the folder's
        gpu_memory_utilization=0.1,  # on the CPU: the share of RAM it checks is free at start
    )
    load_s = time.perf_counter() - t0

    def params(T, n, **kw):
        return SamplingParams(
            n=n,
            temperature=spec["temperature"],
            top_p=spec["top_p"],
            top_k=0,
            min_p=0.0,
            repetition_penalty=1.0,
            max_tokens=T,
            stop_token_ids=stops,
            **kw,
        )

    prompts = spec["prompts"]
    llm.generate(prompts[:1], params(8, 2), use_tqdm=False)  # warm-up
    out: list[dict] = [dict(load_s=load_s)]
    for b in spec["batches"]:
        for T in spec["new_tokens"]:
            la = _load()
            t0 = time.perf_counter()
            res = llm.generate(prompts[: b // g], params(T, g), use_tqdm=False)
            dt = time.perf_counter() - t0
            comps = [c for r in res for c in r.outputs]
            toks = [list(c.token_ids) for c in comps]
            finish = ["length" if c.finish_reason == "length" else "stop" for c in comps]
            out.append(
                dict(
                    batch=b,
                    new_tokens=T,
                    seconds=dt,
                    tokens=sum(map(len, toks)),
                    n_length=sum(f == "length" for f in finish),
                    bad_finish=_check_finish(toks, finish, stops, T),
                    load_avg=la,
                )
            )
            print(f"[vllm t={spec['threads']}] b={b} T={T} {out[-1]['tokens'] / dt:.0f} tok/s", file=sys.stderr)

    if spec.get("extras"):
        out[0].update(_vllm_extras(llm, params, spec))
    return out


def _vllm_extras(llm, params, spec) -> dict:
    """Weight sync timing and effect, and sampled tokens with their log-probs."""
    import torch
    from safetensors.torch import load_file

    extras: dict = {}
    prompts = spec["prompts"]
    # the sampled tokens and the engine's log-prob of each (temperature 1, top-p 1: the raw
    # log-probs are the sampling distribution's)
    res = llm.generate(prompts[:1], params(32, 4, logprobs=0), use_tqdm=False)
    samples = []
    for pi, r in enumerate(res):
        for c in r.outputs:
            lp = [d[t].logprob for t, d in zip(c.token_ids, c.logprobs)]
            samples.append(dict(prompt=pi, token_ids=list(c.token_ids), logprobs=lp, finish=c.finish_reason))
    extras["samples"] = samples

    sd = load_file(os.path.join(spec["folder"], "model.safetensors"))
    from vllm import SamplingParams

    def push(state):
        # the worker's in-place reload (the CPU backend repacks linear weights after loading,
        # so a plain ``model.load_weights`` finds empty parameters); the prefix cache holds
        # keys/values of the old weights
        with torch.no_grad():
            llm.collective_rpc("reload_weights", kwargs=dict(weights_iterator=iter(state.items())))
        llm.reset_prefix_cache()

    greedy = SamplingParams(temperature=0.0, max_tokens=8)

    def greedy_ids():
        return [list(o.outputs[0].token_ids) for o in llm.generate(prompts[:2], greedy, use_tqdm=False)]

    before = greedy_ids()
    syncs = []
    for _ in range(3):
        t0 = time.perf_counter()
        push(sd)
        syncs.append(time.perf_counter() - t0)
    extras["sync_s"] = syncs
    perturbed = {k: (v * 0.9 if "mlp" in k else v) for k, v in sd.items()}
    push(perturbed)
    changed = greedy_ids()
    push(sd)
    back = greedy_ids()
    extras["sync_effect"] = dict(
        perturbed_changes_output=changed != before, restored_equals_original=back == before
    )
    return extras


def _worker_main(side: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    spec["threads"] = int(spec["threads"])
    rows = _worker_hf(spec) if side == "hf" else _worker_vllm(spec)
    print("RESULT " + json.dumps(rows))


# ----------------------------------------------------------------------------- orchestration


def _run_worker(python: str, side: str, spec: dict, env_extra: dict) -> list[dict]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        path = f.name
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(spec["threads"]), **env_extra)
    t0 = time.perf_counter()
    p = subprocess.run(
        [python, "-m", "benchmarks.bench_rollout", "--worker", side, "--spec", path],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    os.unlink(path)
    if p.returncode != 0:
        raise SystemExit(f"error: the {side} worker failed (exit {p.returncode})")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    rows = json.loads(line[len("RESULT ") :])
    rows[0]["process_s"] = time.perf_counter() - t0
    return rows


def _prompts(n: int) -> tuple[list[str], str, list[int]]:
    from transformers import AutoTokenizer

    from steer.evaluation.generate import stop_token_ids
    from steer.models import resolve
    from steer.train.config import load_config
    from steer.train.tasks import build_task, format_prompt

    cfg = load_config("smol")
    task = build_task(cfg.task)
    folder = resolve(cfg.model.name_or_path)
    tok = AutoTokenizer.from_pretrained(folder)
    from transformers import GenerationConfig

    gen = GenerationConfig.from_pretrained(folder)

    class _M:  # the stop set from the tokenizer and the folder's generation config
        generation_config = gen

    problems = task.train_problems()[:n]
    return [format_prompt(tok, task, p) for p in problems], folder, stop_token_ids(tok, _M)


def _logprob_check(samples: list[dict], prompts: list[str]) -> dict:
    """steer's recomputed log-probs (``response_token_stats``, float32, torch) of the engine's
    sampled tokens against the engine's own."""
    import torch

    from steer.evaluation.generate import encode_prompts
    from steer.train.config import load_config
    from steer.train.rollout import response_token_stats
    from steer.train.trainer import load_model_and_tokenizer

    cfg = load_config("smol")
    model, tok = load_model_and_tokenizer(cfg, log=lambda *a: None)
    model.eval()
    ids, mask = encode_prompts(tok, [prompts[s["prompt"]] for s in samples], 64)
    T = max(len(s["token_ids"]) for s in samples)
    resp = torch.full((len(samples), T), 2, dtype=torch.long)
    valid = torch.zeros((len(samples), T), dtype=torch.bool)
    eng = torch.zeros((len(samples), T), dtype=torch.float64)
    for i, s in enumerate(samples):
        n = len(s["token_ids"])
        resp[i, :n] = torch.tensor(s["token_ids"])
        valid[i, :n] = True
        eng[i, :n] = torch.tensor(s["logprobs"], dtype=torch.float64)
    with torch.no_grad():
        st = response_token_stats(model, ids, mask, resp, temperature=1.0)
    d = (st.logp.double() - eng).abs()[valid]
    seq = ((st.logp.double() - eng) * valid).sum(1).abs()
    return dict(
        tokens=int(valid.sum()),
        max_abs_token_logp_diff=float(d.max()),
        mean_abs_token_logp_diff=float(d.mean()),
        max_abs_seq_logp_diff=float(seq.max()),
    )


def _fmt(x: float, nd: int = 0) -> str:
    return f"{x:,.{nd}f}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=["hf", "vllm"], help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--engine-python", default="/work/venv-engines/bin/python")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--new-tokens", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--rounds", type=int, default=2, help="runs of each side per thread count (A B B A)")
    ap.add_argument("--group", type=int, default=8, help="rollouts per prompt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step-times", type=float, nargs=3, default=DEFAULT_STEP_TIMES,
                    metavar=("ROLLOUT", "OLD_FWD", "UPDATE"))
    ap.add_argument("--bind", action="store_true", help="let vLLM pin its threads to cores 0..t-1")
    ap.add_argument("--out", default="rollout")
    a = ap.parse_args(argv)
    if a.worker:
        _worker_main(a.worker, a.spec)
        return {}
    bad = [b for b in a.batches if b % a.group or b < a.group]
    if bad:
        print(f"error: batch sizes must be multiples of --group {a.group}: {bad}", file=sys.stderr)
        raise SystemExit(2)
    if not Path(a.engine_python).exists():
        print(f"error: --engine-python {a.engine_python} does not exist", file=sys.stderr)
        raise SystemExit(2)

    from benchmarks.common import RESULTS_DIR, machine_info, write_results

    prompts, folder, stops = _prompts(max(a.batches) // a.group)
    base = dict(
        prompts=prompts, folder=folder, stops=stops, group=a.group, seed=a.seed, temperature=1.0,
        top_p=1.0, batches=a.batches, new_tokens=a.new_tokens, bind=a.bind,
    )
    versions = {}
    for side, py in (("hf", sys.executable), ("engine", a.engine_python)):
        mods = "torch transformers" + (" vllm" if side == "engine" else "")
        code = f"import importlib.metadata as m; print(' '.join(m.version(x.replace('vllm','vllm-cpu')) for x in '{mods}'.split()))"
        v = subprocess.run([py, "-c", code], capture_output=True, text=True).stdout.split()
        versions[side] = dict(zip(mods.split(), v))
    runs, workers = [], []
    extras: dict = {}
    for t in a.threads:
        for i, side in enumerate(abba_order(a.rounds)):
            spec = dict(base, threads=t, extras=side == "engine" and not extras)
            py = sys.executable if side == "hf" else a.engine_python
            print(f"== threads={t} run {i + 1}: {side} (load {_load()})", file=sys.stderr)
            rows = _run_worker(py, "hf" if side == "hf" else "vllm", spec, {})
            head = rows[0]
            if "samples" in head:
                extras = {k: head.pop(k) for k in ("samples", "sync_s", "sync_effect")}
            workers.append(dict(side=side, threads=t, **head))
            runs += [dict(r, side=side, threads=t) for r in rows[1:]]
            partial = RESULTS_DIR / f"{a.out}.partial.json"  # nothing lost if a later run fails
            partial.write_text(json.dumps(dict(workers=workers, runs=runs, extras=extras), default=str))

    summary = summarize(runs)
    check = _logprob_check(extras["samples"], prompts) if extras else {}
    sync_s = min(extras["sync_s"]) if extras else float("nan")
    eng_load = [w["load_s"] for w in workers if w["side"] == "engine"]

    # the step estimate at the smol step's shape (32 rollouts, 1 thread) and 128 tokens
    R, F, U = a.step_times
    t_est = 1 if 1 in a.threads else a.threads[0]
    b_est = 32 if 32 in a.batches else a.batches[0]
    T_est = 128 if 128 in a.new_tokens else a.new_tokens[-1]
    hf = summary.get(f"hf|{t_est}|{b_est}|{T_est}")
    en = summary.get(f"engine|{t_est}|{b_est}|{T_est}")
    speed = en["tokens_per_s"] / hf["tokens_per_s"]
    est = dict(
        step_times=dict(rollout=R, old_forward=F, update=U),
        at=dict(threads=t_est, batch=b_est, new_tokens=T_est),
        rollout_speedup=speed,
        sync_s=sync_s,
        reload_s=min(eng_load),
        speedup_with_sync=step_speedup(R, F + U, speed, sync_s),
        speedup_with_reload=step_speedup(R, F + U, speed, min(eng_load)),
        bound_infinite_rollout=(R + F + U) / (F + U),
        bound_infinite_rollout_no_old_forward=(R + F + U) / U,
    )
    est["meets_2x"] = est["speedup_with_sync"] >= 2.0

    lines = [
        f"`python -m benchmarks.bench_rollout --batches {' '.join(map(str, a.batches))} "
        f"--new-tokens {' '.join(map(str, a.new_tokens))} --threads {' '.join(map(str, a.threads))} "
        f"--rounds {a.rounds}`",
        "",
        f"HF: steer's `generate_rollouts` (torch {versions['hf'].get('torch')}, transformers "
        f"{versions['hf'].get('transformers')}). Engine: vLLM CPU {versions['engine'].get('vllm')} "
        f"(torch {versions['engine'].get('torch')}, transformers {versions['engine'].get('transformers')}, "
        "eager mode, float32, in-process engine). Model smollm2-135m-instruct (float32), the smol "
        f"task's chat prompts (47 tokens), {a.group} rollouts per prompt, temperature 1.0, top-p 1.0, "
        f"no top-k, stop token ids {stops}. Runs per side and thread count: {a.rounds} (order A B B A).",
        "",
        "| threads | batch | new tokens | HF tok/s | engine tok/s | engine / HF | HF s | engine s | "
        "mean len HF / engine | hit max HF / engine | load avg HF / engine |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in a.threads:
        for b in a.batches:
            for T in a.new_tokens:
                h, e = summary[f"hf|{t}|{b}|{T}"], summary[f"engine|{t}|{b}|{T}"]
                lines.append(
                    f"| {t} | {b} | {T} | {_fmt(h['tokens_per_s'])} | {_fmt(e['tokens_per_s'])} | "
                    f"{e['tokens_per_s'] / h['tokens_per_s']:.2f} | {h['seconds']:.1f} | {e['seconds']:.1f} | "
                    f"{h['mean_len']:.0f} / {e['mean_len']:.0f} | {h['frac_length']:.0%} / {e['frac_length']:.0%} | "
                    f"{h['load_avg']:.1f} / {e['load_avg']:.1f} |"
                )
    n_bad = {s: sum(r["bad_finish"] for r in runs if r["side"] == s) for s in ("hf", "engine")}
    lines += [
        "",
        f"Stop/truncation rule broken (a `stop` response not ending in exactly one stop token, or a "
        f"`length` response not of max_new_tokens tokens): HF {n_bad['hf']}, engine {n_bad['engine']} "
        f"of {sum(r['batch'] for r in runs) // 2} responses each.",
    ]
    if check:
        lines += [
            "",
            f"Log-probs: the engine's log-prob of each sampled token against steer's recomputation "
            f"(`response_token_stats`, torch float32) on the same {check['tokens']} tokens: max |diff| "
            f"{check['max_abs_token_logp_diff']:.2e}, mean {check['mean_abs_token_logp_diff']:.2e}; "
            f"per sequence sum max |diff| {check['max_abs_seq_logp_diff']:.2e}.",
            "",
            f"Weight sync (full float32 state dict, `load_weights` into the running engine + prefix "
            f"cache reset): {', '.join(f'{s:.2f}' for s in extras['sync_s'])} s; perturbed weights change "
            f"the greedy output: {extras['sync_effect']['perturbed_changes_output']}; restored weights give "
            f"the original output back: {extras['sync_effect']['restored_equals_original']}. Engine build "
            f"(a reload): {', '.join(f'{s:.1f}' for s in eng_load)} s.",
        ]
    lines += [
        "",
        f"RL step estimate (smol step: rollout {R:g} s, old-policy forward {F:g} s, update {U:g} s; "
        f"engine/HF rollout speed at {t_est} thread(s), batch {b_est}, {T_est} new tokens: {speed:.2f}x): "
        f"step speed-up with the sync every step {est['speedup_with_sync']:.2f}x, with a reload every step "
        f"{est['speedup_with_reload']:.2f}x. Bound with an infinitely fast rollout: "
        f"{est['bound_infinite_rollout']:.2f}x ({est['bound_infinite_rollout_no_old_forward']:.2f}x if the "
        f"engine's log-probs also replaced the old-policy forward). Meets the 2x rule: {est['meets_2x']}.",
    ]
    data = dict(
        args=vars(a), versions=versions, workers=workers, runs=runs, summary=summary,
        logprob_check=check, sync=dict(seconds=extras.get("sync_s"), effect=extras.get("sync_effect")),
        estimate=est, machine_at_start=machine_info(),
    )
    (RESULTS_DIR / f"{a.out}.partial.json").unlink(missing_ok=True)
    md = write_results(a.out, "CPU rollout speed: HF generate vs vLLM CPU", "\n".join(lines), data)
    print(md.read_text())
    return data


if __name__ == "__main__":
    main()
