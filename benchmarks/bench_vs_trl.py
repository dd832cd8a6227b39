"""Our standalone trainer against TRL's GRPOTrainer, side by side in one run (CPU, GRPO).

    python -m benchmarks.bench_vs_trl [--reps 3] [--steps 3] [--threads 1] [--no-steer-trl]

Same policy (the warm-started testbed model of ``steer/configs/testbed.yaml``, one copy of the
same weights per trainer), same task (countdown, 3 numbers, the testbed's train pool, reward
+1 / -1 from the task's verifier), same sizes: 16 prompts x 8 rollouts per RL step, at most 40 new
tokens, temperature 1, top-p 1, no top-k, 4 optimiser steps of 32 responses per RL step (TRL:
``per_device_train_batch_size=32, steps_per_generation=4``, so one generation feeds 4 steps and TRL
computes the old log-probs as ours does), AdamW lr 1e-4 constant, grad clip 1, loss GRPO with a
token mean over each optimiser step (TRL ``loss_type='bnpo'``; ours ``method.name=grpo``).

Each repetition builds the trainers afresh and runs, one after the other: ours (``Trainer``
with ``train_step``), TRL's ``GRPOTrainer``, and (unless ``--no-steer-trl``) our
``SteerGRPOTrainer`` with ``steer_method='grpo'`` (the integration's own overhead). Each runs one
warm-up RL step and then ``--steps`` timed RL steps. Reported per trainer: wall time per RL step,
valid generated tokens per second (generated tokens / RL step time), and the phases: generation,
old-log-prob forward, the training forwards + loss + backward, the optimiser (clip + AdamW), the
rest (rewards, advantages, bookkeeping).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

PROMPTS, N, MAX_NEW, MB = 16, 8, 40, 4


class _Timer:
    """Accumulates wall time of wrapped callables by phase name."""

    def __init__(self):
        self.t = defaultdict(float)

    def wrap(self, obj, name: str, phase: str):
        fn = getattr(obj, name)

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[phase] += time.perf_counter() - t0

        setattr(obj, name, timed)


def _config(threads: int, out_dir: str):
    from steer.train.config import load_config

    return load_config(
        "testbed",
        [
            "method.name=grpo",
            f"trainer.num_threads={threads}",
            f"trainer.prompts_per_step={PROMPTS}",
            f"trainer.num_mini_batches={MB}",
            f"rollout.n={N}",
            f"rollout.max_new_tokens={MAX_NEW}",
            "rollout.temperature=1.0",
            "rollout.top_p=1.0",
            "rollout.top_k=0",
            "logging.progress=false",
            "logging.tensorboard=false",
            f"logging.out_dir={out_dir}",
        ],
    )


PHASES = ("generation_s", "old_logp_s", "train_fwd_s", "loss_s", "backward_s", "optimizer_s", "other_s")


def run_ours(cfg, model, tokenizer, task, steps: int, threads: int) -> list[dict]:
    from steer.train.trainer import Trainer

    torch.set_num_threads(threads)
    tr = Trainer(cfg, model=model, tokenizer=tokenizer, task=task, log=lambda m: None)
    timer = _Timer()
    timer.wrap(tr.optimizer, "step", "optimizer")
    timer.wrap(torch.nn.utils, "clip_grad_norm_", "optimizer")
    timer.wrap(tr, "loss_batch", "train_fwd")  # forward + token statistics -> LossBatch
    timer.wrap(tr.method, "compute_loss", "loss")
    rows = []
    try:
        for step in range(steps + 1):
            timer.t.clear()
            t0 = time.perf_counter()
            rec = tr.train_step(step)
            wall = time.perf_counter() - t0
            if step == 0:
                continue
            t = timer.t
            row = {
                "step_s": wall,
                "tokens": rec["tokens/rollout"],
                "generation_s": rec["time/rollout"],
                "old_logp_s": rec["time/old_forward"],
                "train_fwd_s": t["train_fwd"],
                "loss_s": t["loss"],
                "backward_s": rec["time/update"] - t["train_fwd"] - t["loss"] - t["optimizer"],
                "optimizer_s": t["optimizer"],
            }
            row["other_s"] = wall - sum(row[k] for k in PHASES[:-1])
            rows.append(row)
    finally:
        del torch.nn.utils.clip_grad_norm_  # drop the instance-level wrapper
        import importlib

        importlib.reload(torch.nn.utils.clip_grad)
        from torch.nn.utils.clip_grad import clip_grad_norm_

        torch.nn.utils.clip_grad_norm_ = clip_grad_norm_
    return rows


class _StepClock:
    """TRL callback: wall time of each optimiser step and of its optimizer.step()."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self

        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                clock.t0 = time.perf_counter()

            def on_pre_optimizer_step(self, args, state, control, **kw):
                clock.t_opt = time.perf_counter()

            def on_optimizer_step(self, args, state, control, **kw):
                clock.opt.append(time.perf_counter() - clock.t_opt)

            def on_step_end(self, args, state, control, **kw):
                clock.steps.append(time.perf_counter() - clock.t0)

        self.cb = CB()
        self.steps: list[float] = []
        self.opt: list[float] = []


def run_trl(model, tokenizer, task, steps: int, threads: int, steer: bool, out_dir: str) -> list[dict]:
    from datasets import Dataset

    from steer.train.tasks import format_prompt, score_batch

    torch.set_num_threads(threads)
    problems = task.train_problems()
    ds = Dataset.from_dict(
        {"prompt": [format_prompt(tokenizer, task, p) for p in problems], "pidx": list(range(len(problems)))}
    )
    generated = []

    def countdown_reward(completions, pidx, completion_ids, **kw):
        generated.append(sum(len(c) for c in completion_ids))
        ok = score_batch(task, [problems[i] for i in pidx], list(completions))
        return [1.0 if c else -1.0 for c in ok]

    common = dict(
        output_dir=out_dir,
        per_device_train_batch_size=PROMPTS * N // MB,
        steps_per_generation=MB,
        gradient_accumulation_steps=1,
        num_generations=N,
        max_completion_length=MAX_NEW,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        weight_decay=0.0,
        loss_type="bnpo",
        beta=0.0,
        epsilon=0.2,
        max_steps=MB * (steps + 1),
        logging_steps=10**6,
        report_to="none",
        save_strategy="no",
        bf16=False,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    if steer:
        from steer.integrations.trl import SteerGRPOConfig, SteerGRPOTrainer

        args, cls = SteerGRPOConfig(**common, steer_method="grpo"), SteerGRPOTrainer
    else:
        from trl import GRPOConfig, GRPOTrainer

        args, cls = GRPOConfig(**common), GRPOTrainer
    clock = _StepClock()
    tr = cls(
        model=model,
        reward_funcs=countdown_reward,
        args=args,
        train_dataset=ds,
        processing_class=tokenizer,
        callbacks=[clock.cb],
    )
    timer = _Timer()
    timer.wrap(tr, "_generate", "generation")
    timer.wrap(tr, "_generate_and_score_completions", "rollout_total")
    timer.wrap(tr, "compute_loss", "fwd_loss")
    timer.wrap(tr, "_clip_grad_norm", "clip")
    timer.wrap(tr.accelerator, "backward", "bwd")
    fwd = tr._get_per_token_logps_and_entropies

    def timed_fwd(*a, **k):  # the training forward (grad on); the no-grad one is the old-logp pass
        t0 = time.perf_counter()
        try:
            return fwd(*a, **k)
        finally:
            timer.t["train_fwd" if torch.is_grad_enabled() else "old_fwd"] += time.perf_counter() - t0

    tr._get_per_token_logps_and_entropies = timed_fwd
    marks = []

    from transformers import TrainerCallback

    class PhaseCB(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step % MB == 0:
                marks.append(dict(timer.t))
                timer.t.clear()

    tr.add_callback(PhaseCB())
    tr.train()
    per_rl: list[dict] = []
    for k in range(steps + 1):
        sl = slice(k * MB, (k + 1) * MB)
        step_s = sum(clock.steps[sl])
        ph = defaultdict(float, marks[k])
        opt = sum(clock.opt[sl]) + ph["clip"]
        row = {
            "step_s": step_s,
            "tokens": generated[k],
            "generation_s": ph["generation"],
            "old_logp_s": ph["old_fwd"],
            "train_fwd_s": ph["train_fwd"],
            "loss_s": ph["fwd_loss"] - ph["train_fwd"],
            "backward_s": ph["bwd"],  # accelerator.backward
            "optimizer_s": opt,
        }
        row["other_s"] = step_s - sum(row[k] for k in PHASES[:-1])
        per_rl.append(row)
    return per_rl[1:]


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def isolate(base_model, tokenizer, task, threads: int, repeat: int, out_dir: str) -> dict:
    """The phases on identical inputs, each trainer's own code, best of ``repeat`` alternated runs:
    generation of 16 x 8 rollouts, the no-grad forward over them, and forward + backward of one
    optimiser step (32 responses, loss = -sum(A logp) / tokens)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from steer.evaluation.generate import sample
    from steer.train.rollout import response_token_stats
    from steer.train.tasks import format_prompt

    torch.set_num_threads(threads)
    problems = task.train_problems()[:PROMPTS]
    prompts = [format_prompt(tokenizer, task, p) for p in problems]
    ours_model = copy.deepcopy(base_model)
    trl_model = copy.deepcopy(base_model)
    tr = GRPOTrainer(
        model=trl_model,
        reward_funcs=lambda completions, **k: [0.0] * len(completions),
        args=GRPOConfig(
            output_dir=out_dir,
            per_device_train_batch_size=PROMPTS * N // MB,
            steps_per_generation=MB,
            num_generations=N,
            max_completion_length=MAX_NEW,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            report_to="none",
            bf16=False,
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
        ),
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
    )
    torch.manual_seed(0)
    ro = sample(
        ours_model, tokenizer, prompts, N, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=MAX_NEW
    )
    pid, pm, rid, rm = ro.prompt_ids, ro.prompt_mask.long(), ro.response_ids, ro.response_mask
    adv = torch.randn(rid.shape[0], 1)
    mb = slice(0, PROMPTS * N // MB)
    out: dict[str, float] = {}

    def gen_ours():
        sample(ours_model, tokenizer, prompts, N, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=MAX_NEW)

    def gen_trl():
        tr._generate([p for p in prompts for _ in range(N)])

    def old_ours():
        with torch.no_grad():
            response_token_stats(ours_model, pid, pm, rid)

    def old_trl():
        with torch.no_grad():
            tr._get_per_token_logps_and_entropies(
                trl_model,
                torch.cat([pid, rid], 1),
                torch.cat([pm, rm.long()], 1),
                rid.shape[1],
                batch_size=PROMPTS * N // MB,
                compute_entropy=True,
            )

    def step_ours():
        ours_model.zero_grad(set_to_none=True)
        st = response_token_stats(ours_model, pid[mb], pm[mb], rid[mb])
        m = rm[mb].float()
        (-(adv[mb] * st.logp * m).sum() / m.sum()).backward()

    def step_trl():
        trl_model.zero_grad(set_to_none=True)
        logp, _, _ = tr._get_per_token_logps_and_entropies(
            trl_model,
            torch.cat([pid[mb], rid[mb]], 1),
            torch.cat([pm[mb], rm[mb].long()], 1),
            rid.shape[1],
            compute_entropy=True,
        )
        m = rm[mb].float()
        (-(adv[mb] * logp * m).sum() / m.sum()).backward()

    ours_model.train()
    trl_model.train()
    for name, fo, ft, rep in (
        ("generation_s", gen_ours, gen_trl, max(1, repeat // 2)),
        ("old_logp_fwd_s", old_ours, old_trl, repeat),
        ("train_fwd_bwd_s", step_ours, step_trl, repeat),
    ):
        a = b = float("inf")
        for _ in range(rep):  # alternated
            a = min(a, _best(fo, 1))
            b = min(b, _best(ft, 1))
        out[f"ours/{name}"], out[f"trl/{name}"] = a, b
    out["responses"] = int(rid.shape[0])
    out["valid_tokens"] = int(rm.sum())
    out["padded_len"] = int(rid.shape[1])
    return out


def _mean(rows, key):
    return statistics.mean(r[key] for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed RL steps per trainer and repetition")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-steer-trl", action="store_true", help="skip SteerGRPOTrainer")
    ap.add_argument(
        "--isolate-repeat", type=int, default=5, help="best-of-N alternated runs of each phase (0: skip)"
    )
    args = ap.parse_args(argv)

    from benchmarks.common import write_results
    from steer.train.tasks import build_task
    from steer.train.trainer import load_model_and_tokenizer

    names = ["ours", "trl"] + ([] if args.no_steer_trl else ["steer_trl"])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(args.threads, str(Path(tmp) / "ours"))
        base_model, tokenizer = load_model_and_tokenizer(cfg, log=lambda m: None)
        task = build_task(cfg.task)
        params = sum(p.numel() for p in base_model.parameters())
        reps: list[dict[str, list[dict]]] = []
        for rep in range(args.reps):
            res = {}
            order = names[rep % len(names) :] + names[: rep % len(names)]  # rotate: no trainer always first
            for name in order:
                model = copy.deepcopy(base_model)
                t0 = time.perf_counter()
                if name == "ours":
                    res[name] = run_ours(cfg, model, tokenizer, task, args.steps, args.threads)
                else:
                    res[name] = run_trl(
                        model,
                        tokenizer,
                        task,
                        args.steps,
                        args.threads,
                        name == "steer_trl",
                        str(Path(tmp) / f"{name}-{rep}"),
                    )
                s = _mean(res[name], "step_s")
                tok = _mean(res[name], "tokens")
                print(
                    f"rep {rep} {name:9s}: {s:6.2f} s/step, {tok / s:7.1f} tok/s "
                    f"({time.perf_counter() - t0:.0f} s incl. set-up)",
                    flush=True,
                )
            reps.append(res)
        iso = (
            isolate(base_model, tokenizer, task, args.threads, args.isolate_repeat, str(Path(tmp) / "iso"))
            if args.isolate_repeat
            else {}
        )

    summary = {}
    for name in names:
        rows = [r for rep in reps for r in rep[name]]
        per_rep = [_mean(rep[name], "step_s") for rep in reps]
        summary[name] = {
            "step_s": _mean(rows, "step_s"),
            "step_s_per_rep": per_rep,
            "tokens_per_step": _mean(rows, "tokens"),
            "tok_s": sum(r["tokens"] for r in rows) / sum(r["step_s"] for r in rows),
            **{k: _mean(rows, k) for k in PHASES},
        }
    ratio_per_rep = [
        (sum(r["tokens"] for r in rep["ours"]) / sum(r["step_s"] for r in rep["ours"]))
        / (sum(r["tokens"] for r in rep["trl"]) / sum(r["step_s"] for r in rep["trl"]))
        for rep in reps
    ]
    lines = [
        f"Testbed policy ({params:,} parameters), countdown, {PROMPTS} prompts x {N} rollouts per RL step, "
        f"max {MAX_NEW} new tokens, {MB} optimiser steps of {PROMPTS * N // MB} responses per RL step, GRPO, "
        f"{args.threads} torch thread(s); {args.reps} repetitions x {args.steps} timed RL steps per trainer "
        "(after one warm-up step), trainers alternated within each repetition.",
        "",
        "| trainer | s / RL step | per repetition | tokens / step | tokens / s | generation | old-logp fwd | train fwd | loss | backward | optimiser | other |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    label = {
        "ours": "steer Trainer (standalone)",
        "trl": "TRL GRPOTrainer",
        "steer_trl": "SteerGRPOTrainer (grpo)",
    }
    for name in names:
        s = summary[name]
        lines.append(
            f"| {label[name]} | {s['step_s']:.2f} | {', '.join(f'{x:.2f}' for x in s['step_s_per_rep'])} | "
            f"{s['tokens_per_step']:.0f} | {s['tok_s']:.0f} | "
            + " | ".join(f"{s[k]:.3f}" for k in PHASES)
            + " |"
        )
    ratio = summary["ours"]["tok_s"] / summary["trl"]["tok_s"]
    lines += [
        "",
        f"Throughput ratio ours / TRL (tokens per second): **{ratio:.2f}x** overall; per repetition "
        + ", ".join(f"{x:.2f}x" for x in ratio_per_rep)
        + " (target: >= 1.0x).",
    ]
    if "steer_trl" in summary:
        lines.append(
            f"SteerGRPOTrainer / TRL GRPOTrainer step time: {summary['steer_trl']['step_s'] / summary['trl']['step_s']:.2f}x."
        )
    lines += [
        "",
        "Phases (seconds per RL step): generation = HF `generate` (ours: `steer.evaluation.generate.sample`; "
        "TRL: `_generate`); old-logp fwd = the no-grad forward over the 128 rollouts (ours: log-prob and entropy "
        "through `steer.core.stats`, one batch; TRL: its fused LM head, chunks of 32); train fwd = the forwards "
        "of the 4 optimiser steps (ours: `Trainer.loss_batch`; TRL: `_get_per_token_logps_and_entropies` with "
        "grad); loss = the loss function without the forward (ours: `Method.compute_loss`; TRL: the rest of "
        "`compute_loss`); backward = ours: the rest of the update (the backward), TRL: `accelerator.backward`; "
        "optimiser = gradient clipping + AdamW; other = the rest of the step (rewards, advantages, TRL's "
        "`_prepare_inputs` buffering and the HF Trainer loop around each optimiser step, logging).",
    ]
    cmd = (
        f"Command: `python -m benchmarks.bench_vs_trl --reps {args.reps} --steps {args.steps} --threads {args.threads}"
        + (" --no-steer-trl" if args.no_steer_trl else "")
        + f" --isolate-repeat {args.isolate_repeat}`."
    )
    if iso:
        lines += [
            "",
            f"Isolated phases on identical inputs ({iso['responses']} rollouts, {iso['valid_tokens']} valid tokens, padded "
            f"to {iso['padded_len']}; best of {args.isolate_repeat} alternated runs, seconds):",
            "",
            "| phase | ours | TRL | TRL / ours |",
            "|---|---|---|---|",
        ]
        for ph, what in (
            ("generation_s", "generation of 16 x 8 rollouts (ours `sample`, TRL `_generate`)"),
            ("old_logp_fwd_s", "no-grad log-prob + entropy forward over the 128 rollouts"),
            ("train_fwd_bwd_s", "forward + backward of one optimiser step (32 responses)"),
        ):
            a, b = iso[f"ours/{ph}"], iso[f"trl/{ph}"]
            lines.append(f"| {what} | {a:.3f} | {b:.3f} | {b / a:.2f} |")
    lines += ["", cmd]
    data = {"summary": summary, "ratio": ratio, "ratio_per_rep": ratio_per_rep, "reps": reps, "isolated": iso}
    path = write_results(
        "vs_trl", "Standalone trainer vs TRL GRPOTrainer (CPU, GRPO)", "\n".join(lines), data
    )
    print("\n".join(lines))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
