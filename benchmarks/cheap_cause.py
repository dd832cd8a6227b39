"""How much of steer_causal's per-token cause c_t a cheap pass keeps, on a real pretrained LM.

The full c_t (the trainer's own cause stage, ``steer.train.cause_stage.cause_pass``) needs a
backward of the mini-batch's entropy through the whole model and a forward-mode pass through the
whole model. The cheap pass restricts the linearised parameter step to the last K decoder layers,
the final norm and the output head (``steer.train.jvp.last_layers``): the entropy gradient and the
tangents live on those parameters only, so the layers below carry no graph and no tangent. With
tied embeddings (SmolLM2) the head's *use* of the tied matrix is in the subset, its use as the
input embedding is not. Optional variants: K layers without the head, and ``grad H_mb`` estimated
from a random share of the rows (scaled up) with the full tangent pass.

On one batch of the smol task (SmolLM2-135M-Instruct on chain_sum), after one warm GRPO step (on
Adam's first step its Jacobian is ~0 and so is every c_t), the script reports per variant:
Spearman and Pearson of c_t against the full c_t over the batch's tokens, the share of the full
batch total sum(c_t) and of sum|c_t| it keeps, the sign agreement, and the wall time of the cause
pass against the full one and against a plain training step (forward + backward of the GRPO loss)
on the same batch.

    OMP_NUM_THREADS=1 nice -n 15 python -m benchmarks.cheap_cause --prompts 4 --rollouts 4 \\
        --max-new-tokens 64 --layers 1 2 4 8 30

Results go to benchmarks/results/cheap_cause.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time

import torch


def _log(msg: str) -> None:
    print(f"[cheap_cause {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _compare(c: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor, g=None, g_ref=None, valid=None) -> dict:
    """c_t against the full c_t over ``mask`` (the tokens with u_t != 0: the others have c_t = 0 in
    both); with ``g``/``g_ref`` also the per-token directional derivative g_t over every valid
    token (``valid``), which needs no advantage."""
    from steer.analysis.correlation import pearson, spearman

    extra = {}
    if g is not None:
        gx, gy = g[valid].double(), g_ref[valid].double()
        extra = {
            "g_spearman": spearman(gx, gy),
            "g_pearson": pearson(gx, gy),
            "g_sign_agreement": float((torch.sign(gx) == torch.sign(gy)).double().mean()),
        }

    x, y = c[mask].double(), ref[mask].double()
    tot, atot = float(y.sum()), float(y.abs().sum())
    nz = (y != 0) | (x != 0)
    return {
        "spearman": spearman(x, y),
        "pearson": pearson(x, y),
        "share_of_total": float(x.sum()) / tot if tot != 0 else float("nan"),
        "share_of_abs": float(x.abs().sum()) / atot if atot > 0 else float("nan"),
        "sign_agreement": float((torch.sign(x[nz]) == torch.sign(y[nz])).double().mean()) if bool(nz.any()) else float("nan"),
        "neg_set_jaccard": _jaccard(x < 0, y < 0),
        **extra,
    }


def _jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    u = int((a | b).sum())
    return int((a & b).sum()) / u if u else float("nan")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="smol")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 4, 16, 30],
                    help="K; K = the model's layer count is every layer + norm + head without the embedding lookup")
    ap.add_argument("--no-head-layers", type=int, nargs="*", default=[], help="K layers + norm, head left out")
    ap.add_argument("--row-shares", type=float, nargs="*", default=[0.25], help="grad H from a share of the rows")
    ap.add_argument("--embedding-only", action=argparse.BooleanOptionalAction, default=True,
                    help="also the tangent on the tied matrix's input-embedding role alone")
    ap.add_argument("--repeats", type=int, default=2, help="time every pass this many times, report the minimum")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--name", default="cheap_cause", help="results file name under benchmarks/results")
    ap.add_argument("overrides", nargs="*", help="dotted config overrides")
    args = ap.parse_args(argv)

    from benchmarks.common import write_results
    from steer.core.registry import build_method
    from steer.train import cause as _cause
    from steer.train import cause_stage
    from steer.train.config import load_config
    from steer.train.jvp import Subset, entropy_gradient, last_layers, trainable_parameters
    from steer.train.trainer import Trainer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    load_start = os.getloadavg()
    t_all = time.perf_counter()
    out_dir = tempfile.mkdtemp(prefix="cheap_cause_")
    b = args.prompts * args.rollouts
    ov = [
        f"trainer.prompts_per_step={args.prompts}",
        f"rollout.n={args.rollouts}",
        f"rollout.max_new_tokens={args.max_new_tokens}",
        "trainer.num_mini_batches=1",
        f"trainer.micro_batch_size={b}",
        "trainer.steps=2",
        f"trainer.seed={args.seed}",
        "eval.every=1000",
        "checkpoint.every=1000",
        "method.name=grpo",
        f"logging.out_dir={out_dir}",
        *args.overrides,
    ]
    cfg = load_config(args.config, ov)
    tr = Trainer(cfg, log=lambda m: None)
    model = tr.model
    n_params = sum(p.numel() for p in model.parameters())
    _log(f"model {cfg.model.name_or_path}: {n_params:,} parameters; warm GRPO step (Adam's first step has P ~ 0)")
    t0 = time.perf_counter()
    tr.train_step(0)
    _log(f"warm step {time.perf_counter() - t0:.0f} s; sampling the measured batch")
    data = tr.collect(1)
    lr = tr.current_lr(1)
    for g in tr.optimizer.param_groups:
        g["lr"] = lr
    tr.method = build_method("steer_causal", seed=args.seed)
    rol = data.rollouts
    mb_idx = torch.arange(rol.batch_size)
    mask_all = rol.response_mask.bool()
    norm = dict(
        lr=lr,
        global_num_tokens=max(float(mask_all[mb_idx].sum()), 1.0),
        global_num_seqs=float(mask_all[mb_idx].any(1).sum()),
    )
    chunks = [mb_idx[rel] for rel in tr._chunks(len(mb_idx))]
    valid = mask_all[mb_idx]
    n_tok = int(valid.sum())
    rewards = getattr(rol, "rewards", None)
    _log(f"batch: {rol.batch_size} responses, {n_tok} response tokens, response length {rol.response_ids.shape[1]}")
    sub = _cause.SubBatch.of(rol, mb_idx)
    temp, mbs = cfg.rollout.temperature, cfg.trainer.micro_batch_size
    params = trainable_parameters(model)
    names = list(params)
    leaves = [params[k] for k in names]
    opt_state = copy.deepcopy(tr.optimizer.state_dict())

    # u_t of the unweighted surrogate (the same for every variant)
    with torch.no_grad():
        lb = tr.loss_batch(data, mb_idx, **norm)
        u = tr.method.cause_coefficients(lb).double().cpu()
    del lb
    mask = valid & (u != 0)
    _log(f"{int(mask.sum())} of {n_tok} response tokens have u_t != 0 (a group with both right and wrong answers)")

    reps = max(1, args.repeats)

    def timed(fn):
        """fn() ``reps`` times: (first result, min seconds, every seconds)."""
        out, secs = None, []
        for i in range(reps):
            t0 = time.perf_counter()
            r = fn()
            secs.append(time.perf_counter() - t0)
            if i == 0:
                out = r
        return out, min(secs), secs

    # a plain training step's forward + backward (GRPO loss) on the same batch
    grpo = build_method("grpo", seed=args.seed)

    def plain_step():
        model.train()
        tr.optimizer.zero_grad(set_to_none=True)
        for idx in chunks:
            lb = tr.loss_batch(data, idx, **norm)
            loss, _ = grpo.compute_loss(lb)
            loss.backward()
            del lb
        tr.optimizer.zero_grad(set_to_none=True)

    _, t_step, t_step_all = timed(plain_step)
    _log(f"plain step forward+backward {t_step_all} s")

    def full_pass():
        t0 = time.perf_counter()
        g_h, g_l, ents = cause_stage._accumulate_gradients(tr, data, chunks, norm, names, leaves)
        t_grads = time.perf_counter() - t0
        gnorm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in g_l.values()))
        kappa0 = min(1.0, cfg.optim.grad_clip / (gnorm + 1e-6))
        g_l = {k: g * kappa0 for k, g in g_l.items()}
        cp = _cause.cause_pass(
            model, sub, tr.optimizer, grad_entropy=g_h, grad_loss=g_l, entropy_before=torch.cat(ents),
            temperature=temp, micro_batch_size=mbs,
        )
        model.train()
        _log(f"full pass: grads {t_grads:.1f} s, linearisation + JVP {cp.seconds:.1f} s")
        return cp.direction.double().cpu(), kappa0, gnorm, g_l, t_grads, cp.seconds

    (g_full, kappa0, gnorm, g_l, t_grads, t_jvp), t_full, t_full_all = timed(full_pass)
    c_full = u * kappa0 * g_full
    full_time = {"seconds": t_full, "seconds_all": t_full_all, "seconds_grads_first": t_grads,
                 "seconds_jvp_first": t_jvp, "grad_norm_G0": gnorm, "kappa0": kappa0}
    _, t_lin, _ = timed(lambda: _cause.adam_linearisation(tr.optimizer, params, g_l))
    _log(f"Adam's linearisation alone (all parameters, float64) {t_lin:.1f} s")

    # the cheap mode's share common to every K: the trainer's forward and G0's backward only
    def g0_only():
        g = {k: torch.zeros_like(p) for k, p in zip(names, leaves)}
        for idx in chunks:
            lb = tr.loss_batch(data, idx, **norm)
            m = lb.response_mask
            uu = tr.method.cause_coefficients(lb).to(device=lb.logp.device, dtype=lb.logp.dtype)
            gs = torch.autograd.grad(-(uu * lb.logp)[m].sum(), leaves, allow_unused=True)
            for k, gg in zip(names, gs):
                if gg is not None:
                    g[k].add_(gg)
            del lb
        return g

    _, t_g0, t_g0_all = timed(g0_only)
    _log(f"G0 only (forward + one backward) {t_g0_all} s")

    rows = []

    def record(label: str, k, g: torch.Tensor, seconds_pass: float, seconds_all, extra: dict | None = None):
        c = u * kappa0 * g
        cmp = _compare(c, c_full, mask, g, g_full, valid)
        total = t_g0 + seconds_pass
        r = {
            "variant": label,
            "layers": k,
            **cmp,
            "seconds_own_pass": seconds_pass,
            "seconds_own_pass_all": seconds_all,
            "seconds_cause": total,
            "cost_vs_full": total / t_full,
            "cost_vs_step": total / t_step,
            **(extra or {}),
        }
        rows.append(r)
        _log(
            f"{label}: spearman {cmp['spearman']:.3f} pearson {cmp['pearson']:.3f} share {cmp['share_of_total']:.3f} "
            f"|share| {cmp['share_of_abs']:.3f} sign {cmp['sign_agreement']:.3f}; {total:.1f} s "
            f"({total / t_full:.2f} x full, {total / t_step:.2f} x step; own pass {seconds_all})"
        )

    def restricted(s):
        def run():
            cp = _cause.cause_pass(
                model, sub, tr.optimizer, grad_entropy=None, grad_loss=g_l, entropy_before=c_full,
                temperature=temp, micro_batch_size=mbs, subset=s,
            )
            model.train()
            return cp.direction.double().cpu()

        g, secs, secs_all = timed(run)
        return g, secs, secs_all, {"subset_parameters": sum(params[v].numel() for v in set(s.source.values()))}

    total_layers = last_layers(model, 1).total_layers
    for k in args.layers:
        s = last_layers(model, k)
        g, secs, secs_all, extra = restricted(s)
        what = f"last {k} layers + norm + head" if k < total_layers else f"all {k} layers + norm + head, embedding lookup left out"
        record(what, k, g, secs, secs_all, extra)
    for k in args.no_head_layers:
        s = last_layers(model, k)
        s = Subset(source={r_: v for r_, v in s.source.items() if not r_.startswith("lm_head")}, layers=k,
                   total_layers=total_layers)
        g, secs, secs_all, extra = restricted(s)
        record(f"last {k} layers + norm, no head", f"{k}-nohead", g, secs, secs_all, extra)
    if args.embedding_only:
        emb = model.get_input_embeddings()
        role = next(f"{n}.weight" for n, m_ in model.named_modules() if m_ is emb)
        canon = {id(p): n for n, p in params.items()}[id(emb.weight)]
        s = Subset(source={role: canon}, layers=0, total_layers=total_layers)
        g, secs, secs_all, extra = restricted(s)
        record("input embedding lookup only (tied matrix's embedding role)", "embedding", g, secs, secs_all, extra)
    gen = torch.Generator().manual_seed(args.seed)
    for share in args.row_shares:
        n_rows = max(1, round(share * rol.batch_size))
        rows_idx = torch.randperm(rol.batch_size, generator=gen)[:n_rows].sort().values

        def run(rows_idx=rows_idx):
            gh = entropy_gradient(model, _cause.SubBatch.of(rol, rows_idx), temperature=temp, micro_batch_size=mbs)
            scale = float(valid.sum()) / max(float(valid[rows_idx].sum()), 1.0)
            gh = {k: g * scale for k, g in gh.items()}
            cp = _cause.cause_pass(
                model, sub, tr.optimizer, grad_entropy=gh, grad_loss=g_l, entropy_before=c_full,
                temperature=temp, micro_batch_size=mbs,
            )
            model.train()
            return cp.direction.double().cpu()

        g, secs, secs_all = timed(run)
        record(f"all layers, grad H from {share:.0%} of the rows", f"rows{share}", g, secs, secs_all)

    # the full pass again: run-to-run agreement and timing drift under the shared machine's load
    tr.optimizer.load_state_dict(copy.deepcopy(opt_state))
    (g_again, *_), t_again, t_again_all = timed(full_pass)
    cmp = _compare(u * kappa0 * g_again, c_full, mask, g_again, g_full, valid)
    rows.append({"variant": f"full pass again (all {total_layers} layers)", "layers": "full", **cmp,
                 "seconds_cause": t_again, "seconds_own_pass_all": t_again_all,
                 "cost_vs_full": t_again / t_full, "cost_vs_step": t_again / t_step})
    full_again = {"seconds": t_again, "seconds_all": t_again_all}

    load_end = os.getloadavg()
    res = {
        "command": "python -m benchmarks.cheap_cause " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": args.config,
        "model": cfg.model.name_or_path,
        "parameters": n_params,
        "decoder_layers": total_layers,
        "seconds_adam_linearisation_all": t_lin,
        "batch": {"responses": rol.batch_size, "response_tokens": n_tok, "tokens_u_nonzero": int(mask.sum()), "prompts": args.prompts,
                  "rollouts": args.rollouts, "max_new_tokens": args.max_new_tokens,
                  "mean_reward": float(rewards.float().mean()) if isinstance(rewards, torch.Tensor) else None},
        "full_c": {"sum": float(c_full[mask].sum()), "sum_abs": float(c_full[mask].abs().sum()),
                   "neg_share": float((c_full[mask] < 0).double().mean())},
        "repeats": reps,
        "seconds_plain_step": t_step,
        "seconds_plain_step_all": t_step_all,
        "seconds_g0_only": t_g0,
        "seconds_g0_only_all": t_g0_all,
        "full": full_time,
        "full_repeat": full_again,
        "rows": rows,
        "load_avg_start": list(load_start),
        "load_avg_end": list(load_end),
        "threads": torch.get_num_threads(),
        "seconds_total": time.perf_counter() - t_all,
    }
    if not args.no_write:
        md = _markdown(res)
        path = write_results(args.name, "steer_causal's cause c_t: a cheap pass against the full one", md, res)
        _log(f"wrote {path}")
    return res


def _f(v, d=3) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def _markdown(res: dict) -> str:
    b = res["batch"]
    lines = [
        f"Command: `OMP_NUM_THREADS=1 nice -n 15 {res['command']}` ({res['threads']} thread; load average "
        f"{res['load_avg_start'][0]:.2f} at the start, {res['load_avg_end'][0]:.2f} at the end: the machine was "
        "shared with two training runs and other agents, so the timings are noisy).",
        "",
        f"Model `{res['model']}` ({res['parameters']:,} parameters, {res['decoder_layers']} decoder layers, tied "
        f"embeddings), config `{res['config']}`, one batch after one warm GRPO step: {b['prompts']} prompts x "
        f"{b['rollouts']} rollouts, at most {b['max_new_tokens']} new tokens, {b['response_tokens']} response tokens, "
        f"{b['tokens_u_nonzero']} of them with u_t != 0 (c_t is compared over these; g_t over all). "
        f"Full c_t: sum {res['full_c']['sum']:.3e}, sum|c| {res['full_c']['sum_abs']:.3e}, "
        f"{res['full_c']['neg_share']:.0%} negative.",
        "",
        f"Times (the minimum of {res['repeats']} runs each; every run in the JSON): plain training step (forward + "
        f"backward of the GRPO loss) {res['seconds_plain_step']:.1f} s; full cause pass {res['full']['seconds']:.1f} s "
        f"(first run: forward + two backwards {res['full']['seconds_grads_first']:.1f} s, linearisation + forward-mode "
        f"pass {res['full']['seconds_jvp_first']:.1f} s); the full pass repeated at the end {res['full_repeat']['seconds']:.1f} s. "
        f"A cheap pass costs the trainer's forward + G0's backward ({res['seconds_g0_only']:.1f} s, needed for the "
        "clipping factor and Adam's Jacobian) plus its own entropy gradient and forward-mode pass. Adam's float64 "
        f"linearisation over all parameters alone: {res['seconds_adam_linearisation_all']:.1f} s.",
        "",
        "| variant | Spearman c | Pearson c | share of sum c | share of sum abs c | sign agreement c | Jaccard of c<0 sets | Spearman g | sign agreement g | cause pass s | x full | x plain step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['variant']} | {_f(r['spearman'])} | {_f(r['pearson'])} | {_f(r['share_of_total'])} | "
            f"{_f(r['share_of_abs'])} | {_f(r['sign_agreement'])} | {_f(r['neg_set_jaccard'])} | "
            f"{_f(r.get('g_spearman'))} | {_f(r.get('g_sign_agreement'))} | "
            f"{r['seconds_cause']:.1f} | {_f(r['cost_vs_full'], 2)} | {_f(r['cost_vs_step'], 2)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
