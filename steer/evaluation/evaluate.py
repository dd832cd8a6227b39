"""Benchmark evaluation: sample k responses per problem, verify them, report avg@k and pass@k
(spec evaluation.md §4; paper section 5.1 / Table 1).

* :func:`evaluate` runs named benchmarks (or given problem lists) with a backend, writes every
  sample with its verdict to an append-only JSONL file (flushed and fsync'd after each batch),
  and resumes: samples whose key ``(benchmark, problem_id, sample)`` is already in the file are
  not generated again. The first line of the file records the settings; resuming with different
  settings is refused.
* :func:`evaluate_problems`: in-memory validation (model + tokenizer + a list of problems, no
  files) through the one held-out evaluator, :mod:`steer.evaluation.heldout`.

Both sample through :func:`steer.evaluation.generate.sample` (the HF backend), the generation
path of the trainer and the testbed too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from steer.data.benchmarks import PAPER_K, canonical_name, load_benchmark
from steer.data.problems import Problem
from steer.data.templates import apply_template, render
from steer.evaluation.passk import pass_at_k

DISPLAY = {
    "aime24": "AIME24",
    "aime25": "AIME25",
    "amc23": "AMC23",
    "math500": "MATH500",
    "minerva": "Minerva",
    "olympiad": "Olympiad",
}
#: Settings that must match between a run and the file it resumes.
RESUME_KEYS = ("model", "temperature", "top_p", "max_tokens", "template", "scorer")


@dataclass
class BenchmarkResult:
    name: str
    k: int
    n_problems: int
    n_samples: int
    avg_at_k: float
    pass_at: dict[int, float]
    truncated_frac: float
    timeouts: int
    maj_at_k: float = 0.0
    #: Samples whose verification timed out or errored (timeouts included); scored wrong.
    verify_errors: int = 0

    def to_dict(self) -> dict:
        return {
            "benchmark": self.name,
            "k": self.k,
            "problems": self.n_problems,
            "samples": self.n_samples,
            f"avg@{self.k}": self.avg_at_k,
            **{f"pass@{j}": v for j, v in self.pass_at.items()},
            "truncated_frac": self.truncated_frac,
            f"maj@{self.k}": self.maj_at_k,
            "verify_timeouts": self.timeouts,
            "verify_errors": self.verify_errors,
            "verify_error_frac": self.verify_errors / self.n_samples if self.n_samples else 0.0,
        }


@dataclass
class EvalReport:
    results: dict[str, BenchmarkResult]
    settings: dict
    output: str | None = None
    generated: int = 0
    skipped: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def table(self, model_name: str | None = None) -> str:
        """Markdown table shaped like the paper's Table 1 (percentages) plus a per-benchmark table."""
        names = list(self.results)
        label = model_name or str(self.settings.get("model", "model"))
        head = "| Method | " + " | ".join(DISPLAY.get(n, n) for n in names) + " | Avg. |"
        sep = "|" + "---|" * (len(names) + 2)
        vals = [100.0 * self.results[n].avg_at_k for n in names]
        avg = sum(vals) / len(vals) if vals else float("nan")
        row = f"| {label} | " + " | ".join(f"{v:.1f}" for v in vals) + f" | {avg:.1f} |"
        lines = [
            "avg@k per benchmark, in percent ("
            + ", ".join(f"{DISPLAY.get(n, n)} avg@{self.results[n].k}" for n in names)
            + ")",
            "",
            head,
            sep,
            row,
            "",
            "| Benchmark | k | problems | samples | avg@k | pass@k (unbiased) | maj@k | truncated | verify timeouts "
            "| verify errors (timeouts included; scored wrong) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n in names:
            r = self.results[n]
            pk = ", ".join(f"@{j}: {100 * v:.1f}" for j, v in r.pass_at.items())
            lines.append(
                f"| {DISPLAY.get(n, n)} | {r.k} | {r.n_problems} | {r.n_samples} | {100 * r.avg_at_k:.1f} | "
                f"{pk} | {100 * r.maj_at_k:.1f} | {100 * r.truncated_frac:.1f}% | {r.timeouts} | {r.verify_errors} |"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "settings": self.settings,
            "results": {n: r.to_dict() for n, r in self.results.items()},
            "output": self.output,
            "generated": self.generated,
            "skipped": self.skipped,
            "seconds": self.seconds,
        }


def _pass_ks(k: int) -> list[int]:
    ks, j = [], 1
    while j < k:
        ks.append(j)
        j *= 2
    ks.append(k)
    return ks


def summarize(name: str, k: int, records: Sequence[dict]) -> BenchmarkResult:
    """avg@k, unbiased pass@j (j = 1, 2, 4, ..., k) and maj@k from per-sample records of one
    benchmark."""
    by_p: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_p[r["problem_id"]].append(r)
    if not by_p:
        raise ValueError(f"{name}: no samples to summarise")
    avg = 0.0
    pass_at = {j: 0.0 for j in _pass_ks(k)}
    for pid, rs in by_p.items():
        n = len(rs)
        if n < k:
            raise ValueError(f"{name}: problem {pid} has {n} samples, expected {k}")
        c = sum(1 for r in rs if r["correct"])
        avg += c / n
        for j in pass_at:
            pass_at[j] += pass_at_k(n, c, j)
    P = len(by_p)
    n_s = sum(len(v) for v in by_p.values())
    trunc = sum(1 for v in by_p.values() for r in v if r.get("finish") == "length") / n_s
    tos = sum(1 for v in by_p.values() for r in v if r.get("reason") == "timeout")
    errs = sum(
        1
        for v in by_p.values()
        for r in v
        if r.get("reason") == "timeout" or str(r.get("reason") or "").startswith("error")
    )
    maj = sum(_majority_correct(rs) for rs in by_p.values()) / P
    return BenchmarkResult(
        name, k, P, n_s, avg / P, {j: v / P for j, v in pass_at.items()}, trunc, tos, maj, verify_errors=errs
    )


def _majority_correct(rs: Sequence[dict]) -> float:
    """maj@k for one problem (spec §4): the most frequent extracted answer (spaces ignored; ties
    go to the answer seen first; samples without an answer do not vote) scores its verdict."""
    votes: dict[str, list] = {}
    for r in rs:
        pred = r.get("pred")
        if pred is None or not str(pred).strip():
            continue
        key = "".join(str(pred).split())
        votes.setdefault(key, []).append(r)
    if not votes:
        return 0.0
    best = max(votes.values(), key=len)  # max keeps the first of equal-length groups
    return float(bool(best[0]["correct"]))


def _read_done(path: Path) -> tuple[dict | None, dict[tuple, dict]]:
    """Settings line and finished sample records of an existing JSONL (a torn last line is ignored)."""
    meta, done = None, {}
    if not path.exists():
        return meta, done
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # interrupted mid-write
                continue
            raise ValueError(f"{path}: line {i + 1} is not valid JSON (file corrupted)") from None
        if rec.get("type") == "meta":
            meta = rec
        elif rec.get("type") == "sample":
            done[(rec["benchmark"], rec["problem_id"], int(rec["sample"]))] = rec
    if lines and not lines[-1].endswith("\n"):
        # drop the torn tail so appends start on a fresh line
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(lines[:-1])
    return meta, done


def _append(f, recs: list[dict]) -> None:
    for r in recs:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample", dynamic_ncols=True)


def evaluate(
    model=None,
    tokenizer=None,
    benchmarks: Sequence[str] | dict[str, list[Problem]] = (
        "aime24",
        "aime25",
        "amc23",
        "math500",
        "minerva",
        "olympiad",
    ),
    *,
    backend=None,
    k: int | dict[str, int] | None = None,
    temperature: float = 1.0,
    top_p: float = 0.7,
    max_tokens: int = 3072,
    template: str = "as_is",
    scorer: str = "math_verify",
    output: str | os.PathLike | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    pool=None,
    progress: bool = True,
    model_name: str | None = None,
) -> EvalReport:
    """Evaluate a model on benchmarks (names, or ``{name: [Problem, ...]}``).

    ``k``: samples per problem (int for all, a dict per benchmark, or None for the paper's:
    32 on AIME24/AIME25/AMC23, 1 elsewhere). ``backend``: an object with ``generate`` (see
    ``steer.evaluation.generate``); default an :class:`HFBackend` on ``model``/``tokenizer``.
    ``output``: JSONL path (append-only, resumable); None keeps samples in memory only.
    """
    from steer.evaluation.generate import HFBackend
    from steer.rewards.pool import get_default_pool

    t0 = time.time()
    _check_names(template, scorer)
    if backend is None:
        if model is None or tokenizer is None:
            raise ValueError("evaluate: pass model and tokenizer, or a backend")
        backend = HFBackend(model, tokenizer, batch_size=batch_size)
    tok = tokenizer if tokenizer is not None else getattr(backend, "tokenizer", None)
    sets = _problem_sets(benchmarks, limit, data_dir)
    ks = _samples_per_problem(sets, k)
    settings = _settings(
        model, model_name, backend, ks, temperature, top_p, max_tokens, template, scorer, seed
    )
    pool = pool or get_default_pool()
    done, fh = _open_output(output, settings)

    todo, skipped, records = _work_list(sets, ks, done)
    bar = _progress(len(todo), progress, "eval")
    gen_batch = max(1, int(getattr(backend, "batch_size", batch_size)))
    sampling = dict(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    try:
        _sample_all(todo, gen_batch, backend, pool, tok, template, scorer, sampling, fh, bar, records)
    finally:
        if bar is not None:
            bar.close()
        if fh is not None:
            fh.close()
    by_b: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_b[r["benchmark"]].append(r)
    return EvalReport(
        {n: summarize(n, ks[n], by_b[n]) for n in sets},
        {k_: v for k_, v in settings.items() if k_ != "type"},
        str(output) if output is not None else None,
        generated=len(todo),
        skipped=skipped,
        seconds=time.time() - t0,
    )


def _check_names(template: str, scorer: str) -> None:
    """A ValueError listing the valid names for an unknown prompt template or scorer."""
    from steer.data.templates import TEMPLATES
    from steer.rewards.registry import get_scorer

    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; valid: {', '.join(TEMPLATES)}")
    get_scorer(scorer)  # unknown name -> ValueError listing the valid ones


def _problem_sets(benchmarks, limit: int | None, data_dir) -> dict[str, list[Problem]]:
    """``{name: [Problem, ...]}``: the given lists (checked: Problems, ids unique; a missing id
    becomes ``name/i``) or the named benchmarks loaded; ``limit`` problems of each at most."""
    if isinstance(benchmarks, dict):
        sets = {n: list(ps) for n, ps in benchmarks.items()}
        if limit is not None:
            sets = {n: ps[: int(limit)] for n, ps in sets.items()}
        for n, ps in sets.items():
            seen_ids: set[str] = set()
            for i, p in enumerate(ps):
                if not isinstance(p, Problem):
                    raise ValueError(f"{n}: item {i} is {type(p).__name__}, expected steer.data.Problem")
                if not p.id:
                    p = ps[i] = dataclasses.replace(p, id=f"{n}/{i}")  # the caller's object is kept
                if p.id in seen_ids:
                    raise ValueError(f"{n}: problem id {p.id!r} appears twice (item {i})")
                seen_ids.add(p.id)
        return sets
    names = [canonical_name(b) for b in benchmarks]
    if len(set(names)) != len(names):
        raise ValueError(f"benchmark listed twice: {list(benchmarks)}")
    return {n: load_benchmark(n, data_dir=data_dir, limit=limit) for n in names}


def _samples_per_problem(sets: dict, k: int | dict[str, int] | None) -> dict[str, int]:
    """k of each benchmark: ``k`` itself, its entry when a dict, else the paper's (PAPER_K, 1)."""
    ks = {}
    for n in sets:
        kk = k.get(n) if isinstance(k, dict) else k
        kk = kk if kk is not None else PAPER_K.get(n, 1)
        if int(kk) < 1:
            raise ValueError(f"k must be >= 1, got {kk} for {n}")
        ks[n] = int(kk)
    return ks


def _open_output(output, settings: dict) -> tuple[dict[tuple, dict], object]:
    """``(samples already in the file by key, the file open for appending)``, or ``({}, None)``
    without an output. A file written with other settings (:data:`RESUME_KEYS`) is refused; a new
    one starts with the settings line."""
    done: dict[tuple, dict] = {}
    if output is None:
        return done, None
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta, done = _read_done(path)
    if meta is not None:
        diff = {key: (meta.get(key), settings[key]) for key in RESUME_KEYS if meta.get(key) != settings[key]}
        if diff:
            raise ValueError(f"{path}: written with other settings {diff}; use another --output")
    fh = open(path, "a", encoding="utf-8")
    if meta is None:
        _append(fh, [settings])
    return done, fh


def _settings(model, model_name, backend, ks, temperature, top_p, max_tokens, template, scorer, seed) -> dict:
    """The settings line of a run's file (its first line; :data:`RESUME_KEYS` must match on resume)."""
    return {
        "type": "meta",
        "model": model_name or str(getattr(getattr(model, "config", None), "_name_or_path", "") or "model"),
        "temperature": float(temperature),
        "top_p": float(top_p),
        "max_tokens": int(max_tokens),
        "template": template,
        "scorer": scorer,
        "k": ks,
        "backend": getattr(backend, "name", type(backend).__name__),
        "seed": seed,
    }


def _work_list(sets: dict, ks: dict, done: dict) -> tuple[list[tuple[str, Problem, int]], int, list[dict]]:
    """``(the (benchmark, problem, sample index) not yet done, how many are done, the finished
    records of this run's problems and k)``: a file may hold more (a larger k, or --limit)."""
    todo: list[tuple[str, Problem, int]] = []
    for n, ps in sets.items():
        for p in ps:
            for s in range(ks[n]):
                if (n, p.id, s) not in done:
                    todo.append((n, p, s))
    skipped = sum(1 for n, ps in sets.items() for p in ps for s in range(ks[n]) if (n, p.id, s) in done)
    wanted = {(n, p.id) for n, ps in sets.items() for p in ps}
    records = [r for key, r in done.items() if (key[0], key[1]) in wanted and key[2] < ks[key[0]]]
    return todo, skipped, records


def _sample_all(todo, gen_batch, backend, pool, tok, template, scorer, sampling, fh, bar, records) -> None:
    """Sample and verify ``todo`` in batches of ``gen_batch``; each batch's records are appended
    to the file (flushed, fsync'd) and to ``records`` before the next batch starts."""
    prompt_cache: dict[tuple[str, str], str] = {}
    for start in range(0, len(todo), gen_batch):
        chunk = todo[start : start + gen_batch]
        prompts = _prompts(chunk, prompt_cache, template, tok)
        new = _sample_chunk(chunk, prompts, start, backend, pool, scorer, sampling)
        if fh is not None:
            _append(fh, new)
        records.extend(new)
        if bar is not None:
            bar.update(len(chunk))


def _prompts(chunk, cache: dict[tuple[str, str], str], template: str, tok) -> list[str]:
    """The rendered prompt of each sample of ``chunk`` (rendered once per problem: ``cache``)."""
    prompts = []
    for n, p, _s in chunk:
        key = (n, p.id)
        if key not in cache:
            cache[key] = render(apply_template(p, template), tok)
        prompts.append(cache[key])
    return prompts


def _sample_chunk(chunk, prompts, start: int, backend, pool, scorer: str, sampling: dict) -> list[dict]:
    """Generate one response for each ``(benchmark, problem, sample)`` of ``chunk`` from its
    prompt (seed ``seed + start``), verify them, and return their sample records."""
    from steer.rewards.pool import ScoreItem

    comps = backend.generate(
        prompts,
        temperature=sampling["temperature"],
        top_p=sampling["top_p"],
        max_tokens=sampling["max_tokens"],
        seed=sampling["seed"] + start,
    )
    verdicts = pool.score_batch([ScoreItem(c.text, p.gold, scorer) for c, (_, p, _) in zip(comps, chunk)])
    return [
        {
            "type": "sample",
            "benchmark": n,
            "problem_id": p.id,
            "sample": s,
            "response": c.text,
            "n_tokens": c.n_tokens,
            "finish": c.finish,
            "gold": p.gold,
            "pred": v.pred,
            "correct": v.correct,
            "score": v.score,
            "reason": v.reason,
            "scorer": v.scorer,
        }
        for (n, p, s), c, v in zip(chunk, comps, verdicts)
    ]


def evaluate_problems(
    model,
    tokenizer,
    problems: Sequence[Problem],
    *,
    k: int = 1,
    name: str = "val",
    temperature: float = 1.0,
    top_p: float = 0.7,
    max_tokens: int = 512,
    template: str = "as_is",
    scorer: str = "math_verify",
    batch_size: int = 16,
    seed: int = 0,
    pool=None,
) -> dict[str, float]:
    """In-memory validation: model + tokenizer + math problems -> metrics, no files.

    The one held-out evaluator (:func:`steer.evaluation.heldout.evaluate_heldout`, the trainer's
    and the testbed's as well) with the prompt template and a ``steer.rewards`` scorer in the
    verification pool. Returns ``{"<name>/avg@k", "<name>/pass@j" ..., "<name>/truncated_frac"}``
    (fractions; j = 1, 2, 4, ..., k). The model's train/eval mode is restored.
    """
    from steer.evaluation.heldout import evaluate_heldout
    from steer.rewards.pool import ScoreItem, get_default_pool

    _check_names(template, scorer)
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    problems = list(problems)
    pool = pool or get_default_pool()

    def score(idx: list[int], texts: list[str]) -> list[bool]:
        verdicts = pool.score_batch([ScoreItem(t, problems[i].gold, scorer) for i, t in zip(idx, texts)])
        return [bool(v.correct) for v in verdicts]

    res = evaluate_heldout(
        model,
        tokenizer,
        [render(apply_template(p, template), tokenizer) for p in problems],
        score,
        n=int(k),
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_tokens,
        batch_size=batch_size,
        seed=seed,
    )
    ks = _pass_ks(int(k))
    m = res.metrics(ks)
    out = {f"{name}/avg@{k}": m["acc"], f"{name}/truncated_frac": m["truncated_frac"]}
    out.update({f"{name}/pass@{j}": m[f"pass@{j}"] for j in ks})
    return out
