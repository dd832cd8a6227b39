"""The problems a run trains and evaluates on, and how a response is scored.

Three sources behind one small interface (:class:`Task`):

- ``countdown``: the testbed's countdown task (``steer.testbed.countdown``): several correct
  solutions per problem, a verifier that recomputes the steps, and a canonical form per solution
  (used for the solution-diversity metric).
- ``math``: a parquet/JSONL file of math problems (e.g. DAPO-Math-17k) read with ``steer.data``
  and scored by a ``steer.rewards`` scorer (``task.options.scorer``, default by data source).
- ``reasoning_gym``: any reasoning-gym dataset by name (``task.options.dataset``) through
  ``steer.testbed.ReasoningGymTask``, scored by strict exact match (no partial credit) or, for a
  chat model that reasons before it answers, by a ``steer.rewards`` scorer on the extracted
  answer (``task.options.scorer``) with a ``steer.data`` prompt template (``task.options.template``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: the config module imports this one to validate a task
    from steer.train.config import TaskConfig


class Task(Protocol):
    name: str
    chat_template: bool

    def train_problems(self) -> list: ...
    def heldout_problems(self) -> list: ...
    def prompt(self, problem) -> str: ...
    def correct(self, problem, response: str) -> bool: ...
    def canonical(self, problem, response: str) -> str | None: ...


@dataclass
class CountdownTaskAdapter:
    """``steer.testbed.countdown.CountdownTask`` as a :class:`Task`."""

    cfg: TaskConfig
    name: str = "countdown"
    chat_template: bool = True

    def __post_init__(self) -> None:
        from steer.testbed.countdown import CountdownConfig, CountdownTask

        try:
            self._task = CountdownTask(CountdownConfig(**self.cfg.options))
        except TypeError as exc:
            raise ValueError(f"invalid task.options for countdown: {exc}") from exc
        self.chat_template = self.cfg.chat_template
        self._train = None
        self._heldout = None

    def train_problems(self) -> list:
        if self._train is None:
            self._train = self._task.problems("train", self.cfg.train_size, seed=self.cfg.train_seed)
        return self._train

    def heldout_problems(self) -> list:
        if self._heldout is None:
            self._heldout = self._task.problems("heldout", self.cfg.heldout_size, seed=self.cfg.heldout_seed)
        return self._heldout

    def prompt(self, problem) -> str:
        return problem.prompt

    def correct(self, problem, response: str) -> bool:
        return bool(problem.verify(response))

    def canonical(self, problem, response: str) -> str | None:
        return problem.canonical(response)

    def solutions(self, problem) -> tuple[str, ...]:
        """Every canonical solution of ``problem`` (the ceiling of the diversity metric)."""
        return tuple(problem.solutions)


@dataclass
class ReasoningGymTaskAdapter:
    """Any reasoning-gym dataset (``steer.testbed.ReasoningGymTask``) as a :class:`Task`.

    ``task.options``: ``dataset`` (required, a reasoning-gym name such as ``chain_sum``),
    ``config`` (the dataset's generator settings; default: the testbed's narrow preset for
    ``basic_arithmetic`` and ``chain_sum``, reasoning-gym's own defaults for any other
    dataset), ``heldout_percent`` (share of the question space reserved for held-out
    problems, default 20), ``scorer`` and ``template``. ``task.train_seed`` /
    ``task.heldout_seed`` pick the generator seeds.

    ``scorer``: ``strict`` (default) -- a response is correct when, stripped, it equals the gold
    answer exactly (``steer.testbed.strict_match``), the right rule for a tiny policy trained to
    answer with the bare number; or a ``steer.rewards`` scorer name (``math_verify``, ``dapo``,
    ``qwen``, ...) -- the answer is extracted from the response (last ``\boxed{}`` /
    ``Answer:`` line) and compared with the gold in ``steer.rewards``' process pool, the right
    rule for a chat model that reasons before answering. reasoning-gym's own partial-credit
    scorers are never used.

    ``template``: a ``steer.data`` prompt template around the question (``as_is`` = the bare
    question, the default; ``qwen_boxed``, ``dapo``, ``dapo_boxed`` ask for a boxed answer or
    an ``Answer:`` line)."""

    cfg: TaskConfig
    name: str = "reasoning_gym"
    chat_template: bool = True

    def __post_init__(self) -> None:
        from steer.testbed.rg_tasks import PRESETS, ReasoningGymTask

        opts: dict[str, Any] = dict(self.cfg.options)
        dataset = opts.pop("dataset", None)
        if not isinstance(dataset, str) or not dataset:
            raise ValueError("task.options.dataset is required for task.name=reasoning_gym")
        config = opts.pop("config", None)
        if config is None:
            config = dict(PRESETS.get(dataset, {}))
        if not isinstance(config, dict):
            raise ValueError(f"task.options.config must be a mapping, got {config!r}")
        kw: dict[str, Any] = {"heldout_percent": int(opts.pop("heldout_percent", 20))}
        self._scorer_name = opts.pop("scorer", "strict")
        self._template = opts.pop("template", "as_is")
        if opts:
            raise ValueError(
                f"unknown task.options for reasoning_gym: {sorted(opts)} "
                "(valid: dataset, config, heldout_percent, scorer, template)"
            )
        from steer.data import TEMPLATES

        if self._template not in TEMPLATES:
            raise ValueError(f"task.options.template={self._template!r} is not one of {list(TEMPLATES)}")
        if self._scorer_name != "strict":
            from steer.rewards.registry import SCORERS

            if self._scorer_name not in SCORERS:
                raise ValueError(
                    f"task.options.scorer={self._scorer_name!r} is not 'strict' or a steer.rewards "
                    f"scorer ({', '.join(SCORERS)})"
                )
        if self.cfg.train_seed is not None:
            kw["train_seed"] = int(self.cfg.train_seed)
        if self.cfg.heldout_seed is not None:
            kw["heldout_seed"] = int(self.cfg.heldout_seed)
        import reasoning_gym

        known = set(reasoning_gym.factory.DATASETS)
        if dataset not in known:
            raise ValueError(
                f"task.options.dataset={dataset!r} is not a reasoning-gym dataset "
                f"(some valid names: {', '.join(sorted(known)[:12])}, ...)"
            )
        try:  # the generator settings, checked before any work
            reasoning_gym.create_dataset(dataset, size=1, seed=0, **config)
        except (TypeError, ValueError, AssertionError, KeyError) as exc:
            raise ValueError(
                f"reasoning-gym dataset {dataset!r} rejected task.options.config={config}: {exc}"
            ) from exc
        self.dataset = dataset
        self._task = ReasoningGymTask(dataset, config=dict(config), **kw)
        self.chat_template = self.cfg.chat_template
        self._train = None
        self._heldout = None

    def train_problems(self) -> list:
        if self._train is None:
            self._train = self._task.problems("train", self.cfg.train_size)
        return self._train

    def heldout_problems(self) -> list:
        if self._heldout is None:
            self._heldout = self._task.problems("heldout", self.cfg.heldout_size)
        return self._heldout

    def prompt(self, problem) -> str:
        return problem.prompt

    def render(self, tokenizer, problem) -> str:
        """The question under ``task.options.template``, through the chat template when the task
        uses one (``as_is`` with the chat template is exactly the user turn of the question)."""
        from steer.data import Problem, apply_template, render

        as_problem = Problem(
            id=f"{self.dataset}:{problem.index}",
            problem=problem.prompt,
            gold=problem.answer,
            prompt=[{"role": "user", "content": problem.prompt}],
        )
        messages = apply_template(as_problem, self._template)
        if not self.chat_template:
            if self._template == "as_is":
                return problem.prompt
            return "\n\n".join(m["content"] for m in messages)
        return render(messages, tokenizer)

    def correct_batch(self, problems: list, responses: list[str]) -> list[bool]:
        """Strict match in-process, or a ``steer.rewards`` scorer in its process pool (hard time
        limit per item; a timeout or verifier error is wrong and counted in
        ``last_verify_error_frac``)."""
        if self._scorer_name == "strict":
            self.last_verify_error_frac = 0.0
            return [bool(p.verify(r)) for p, r in zip(problems, responses)]
        from steer.rewards import score_responses
        from steer.rewards.pool import verify_error_frac

        verdicts = score_responses(list(responses), [p.answer for p in problems], scorer=self._scorer_name)
        self.last_verify_error_frac = verify_error_frac(verdicts)
        return [bool(v.correct) for v in verdicts]

    def correct(self, problem, response: str) -> bool:
        return self.correct_batch([problem], [response])[0]

    def canonical(self, problem, response: str) -> str | None:
        if self._scorer_name == "strict":
            return response.strip() if problem.verify(response) else None
        return problem.answer if self.correct(problem, response) else None

    def solutions(self, problem) -> tuple[str, ...]:
        return tuple(problem.solutions)


@dataclass
class MathTaskAdapter:
    """Math problems loaded with ``steer.data.load_any`` (verl parquet, JSONL, HF folder),
    de-duplicated, rendered with a ``steer.data`` prompt template (``task.options.template``,
    default ``as_is``) and scored by a ``steer.rewards`` scorer (``task.options.scorer``, default
    chosen from each problem's data source)."""

    cfg: TaskConfig
    name: str = "math"
    chat_template: bool = True

    def __post_init__(self) -> None:
        from steer.data import TEMPLATES
        from steer.rewards.registry import get_scorer

        self.chat_template = self.cfg.chat_template
        opts: dict[str, Any] = dict(self.cfg.options)
        self._scorer_name = opts.pop("scorer", None)
        self._template = opts.pop("template", "as_is")
        if opts:
            raise ValueError(f"unknown task.options for math: {sorted(opts)} (valid: scorer, template)")
        if self._template not in TEMPLATES:
            raise ValueError(f"task.options.template={self._template!r} is not one of {list(TEMPLATES)}")
        if self._scorer_name is not None:
            get_scorer(self._scorer_name)  # unknown name -> ValueError listing the valid ones
        self._train = None
        self._heldout = None

    def _read(self, path: str, limit: int) -> list:
        """``path``: a file or folder (``steer.data.load_any``), ``hf:<hub id>``, or the name of a
        benchmark (``aime24``, ...: the copy shipped with steer) when no such file exists."""
        from steer.data import deduplicate, load_any
        from steer.data.benchmarks import BENCHMARKS, load_benchmark

        if path in BENCHMARKS and not Path(path).exists():
            return load_benchmark(path)[:limit]
        return deduplicate(load_any(path))[:limit]

    def train_problems(self) -> list:
        if self._train is None:
            self._train = self._read(self.cfg.train_path, self.cfg.train_size)
        return self._train

    def heldout_problems(self) -> list:
        if self._heldout is None:
            path = self.cfg.heldout_path or self.cfg.train_path
            self._heldout = self._read(path, self.cfg.heldout_size)
        return self._heldout

    def prompt(self, problem) -> str:
        return problem.problem

    def render(self, tokenizer, problem) -> str:
        from steer.data import apply_template, render

        messages = apply_template(problem, self._template)
        return render(messages, tokenizer if self.chat_template else None)

    def correct_batch(self, problems: list, responses: list[str]) -> list[bool]:
        """Score a batch in ``steer.rewards``' process pool, which enforces a hard wall-clock limit
        per item (a pathological response is killed and scored wrong; it never hangs training).
        A timeout or a verifier error is wrong, like any wrong answer; their fraction in the batch
        is kept in ``last_verify_error_frac`` (the trainer logs it as ``reward/verify_error_frac``)."""
        from steer.rewards import score_responses
        from steer.rewards.pool import verify_error_frac

        verdicts = score_responses(
            list(responses),
            [p.gold for p in problems],
            data_sources=[p.data_source or None for p in problems],
            scorer=self._scorer_name,
        )
        self.last_verify_error_frac = verify_error_frac(verdicts)
        return [bool(v.correct) for v in verdicts]

    def correct(self, problem, response: str) -> bool:
        return self.correct_batch([problem], [response])[0]

    def canonical(self, problem, response: str) -> str | None:
        return response.strip() if self.correct(problem, response) else None


def score_batch(task: Task, problems: list, responses: list[str]) -> list[bool]:
    """``task.correct`` over a batch, through the task's own batch scorer when it has one (the
    math task scores in a process pool with a hard per-item time limit)."""
    if hasattr(task, "correct_batch"):
        return task.correct_batch(problems, responses)
    return [task.correct(p, r) for p, r in zip(problems, responses)]


def build_task(cfg: TaskConfig) -> Task:
    if cfg.name == "countdown":
        return CountdownTaskAdapter(cfg)
    if cfg.name == "math":
        return MathTaskAdapter(cfg)
    if cfg.name == "reasoning_gym":
        return ReasoningGymTaskAdapter(cfg)
    raise ValueError(f"unknown task.name {cfg.name!r} (valid: countdown, math, reasoning_gym)")


def format_prompt(tokenizer, task: Task, problem) -> str:
    """The text the policy is conditioned on: the chat template's user turn plus the assistant
    header when the task uses one, else the raw prompt."""
    if hasattr(task, "render"):
        return task.render(tokenizer, problem)
    text = task.prompt(problem)
    if task.chat_template and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
    return text
