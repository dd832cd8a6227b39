"""pass@1 / pass@k of a model on a training task, through the trainer's own task adapter.

The prompt is what the trainer and ``steer probe`` condition on (``steer.train.tasks.format_prompt``),
the samples come from the one generation path (``steer.evaluation.generate.sample``) and the
verdicts from the task's own scorer (``steer.train.tasks.score_batch``), so the numbers say
whether GRPO groups on that task will carry signal (pass@1 well inside (0, 1)).

    python -m benchmarks.task_passk --model smollm2-135m-instruct --problems 16 --k 8 \\
        --max-new-tokens 128 task.name=reasoning_gym task.options.dataset=chain_sum \\
        task.options.scorer=math_verify task.options.template=qwen_boxed

Dotted overrides are ``steer train`` config keys (``task.*``); one JSON line goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

from steer.evaluation.passk import mean_pass_at_k


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--k", type=int, default=8, help="samples per problem")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=0, help="sequences per generate call (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=0, help="print this many responses to stderr")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args(argv)

    import sys

    import torch

    from steer.evaluation.generate import sample
    from steer.train.config import load_config
    from steer.train.tasks import build_task, format_prompt, score_batch
    from steer.train.trainer import load_model_and_tokenizer

    cfg = load_config(None, ["model.source=hf", f"model.name_or_path={a.model}", *a.overrides])
    task = build_task(cfg.task)
    problems = task.train_problems()[: a.problems]
    model, tok = load_model_and_tokenizer(cfg, log=lambda *x: None)
    model.eval()
    prompts = [format_prompt(tok, task, p) for p in problems]
    t0 = time.perf_counter()
    gen = sample(
        model,
        tok,
        prompts,
        a.k,
        temperature=a.temperature,
        max_new_tokens=a.max_new_tokens,
        batch_size=a.batch,
        seed=a.seed,
    )
    gen_s = time.perf_counter() - t0
    flat = [p for p in problems for _ in range(a.k)]
    ok = score_batch(task, flat, gen.texts)
    wall = time.perf_counter() - t0
    per = [sum(ok[i * a.k : (i + 1) * a.k]) for i in range(len(problems))]
    for i in range(min(a.show, len(gen.texts))):
        print(
            f"--- [{ok[i]}] gold={flat[i].solutions[0] if hasattr(flat[i], 'solutions') else ''}\n{gen.texts[i]}",
            file=sys.stderr,
        )
    out = {
        "model": a.model,
        "task": cfg.task.name,
        "options": dict(cfg.task.options),
        "problems": len(problems),
        "samples": a.k,
        "max_new_tokens": a.max_new_tokens,
        "temperature": a.temperature,
        "pass@1": sum(per) / (len(problems) * a.k),
        f"pass@{a.k}": mean_pass_at_k([(a.k, c) for c in per], a.k),
        "groups_with_signal": sum(0 < c < a.k for c in per) / len(problems),
        "truncated": sum(f == "length" for f in gen.finish) / len(gen.finish),
        "generate_s": round(gen_s, 1),
        "wall_s": round(wall, 1),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
