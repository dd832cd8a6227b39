"""A countdown-style arithmetic task with several correct solutions per problem.

The main task of the CPU testbed must leave a policy diversity to lose, so
every problem has several distinct correct solutions.

Rules (the verifier enforces them; the solver enumerates exactly what the verifier accepts):

- A problem gives ``numbers`` (a multiset of small positive integers) and a ``target``.
- A response is a comma-separated sequence of steps ``a<op>b=c`` with ``<op>`` one of ``+ - *``,
  e.g. ``7*3=21,21+5=26``. Integers are written in decimal without sign or leading zeros.
  Whitespace around the commas and at both ends is tolerated; nothing else (no spaces inside a
  step, no other operators, no trailing text).
- Each operand must be an available value: one of the given numbers not used yet, or the result of
  an earlier step not used yet. Every number and every result is used at most once.
- **Not all numbers must be used** (a subset of at least two numbers suffices). This keeps several
  solutions per problem and short responses.
- Every step's arithmetic must be right, and every result must be a non-negative integer
  (so ``a-b`` needs ``a >= b``; division does not exist).
- **No dead steps**: every step's result except the last one must be used by a later step, so a
  response is exactly one expression tree. The last step's result must equal the target.

Solutions and how they are counted (:func:`canonical_form`):

- An expression *tree* is a solution up to commutativity: ``7*3`` and ``3*7`` are one tree, and the
  order of independent steps does not matter. :func:`enumerate_trees` lists every tree once.
- A *canonical solution* additionally flattens associative chains of ``+`` and of ``*``:
  ``(a+b)+c``, ``(a+c)+b`` and ``a+(b+c)`` are one canonical solution ``a+b+c``. Subtraction is not
  rewritten, so ``(a+b)-c`` and ``(a-c)+b`` are different canonical solutions. Diversity is
  measured in canonical solutions (:func:`distinct_correct_solutions`), never in reorderings.
- :attr:`Problem.solutions` holds one representative step string per canonical solution
  (:func:`representative_steps`), sorted; the warm-start draws uniformly from them.

Reward: 1.0 for a verified response, 0.0 otherwise (the trainer may map it to +1/-1).

The generator is seeded Python ``random.Random`` only (deterministic across platforms), and the
train and held-out splits are disjoint by construction: a hash of the problem key assigns each
possible problem to exactly one split (:func:`split_of`), and the two splits are also drawn with
different seeds.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

__all__ = [
    "CountdownConfig",
    "CountdownTask",
    "Problem",
    "VerifyResult",
    "canonical_form",
    "distinct_correct_solutions",
    "enumerate_trees",
    "format_prompt",
    "parse_steps",
    "representative_steps",
    "solve",
    "solve_all_targets",
    "split_of",
    "verify",
]

# --------------------------------------------------------------------------------------------
# Canonical forms
#
# A canonical form is a nested tuple whose first element is a type tag, so any two forms compare:
#   (0, n)                  a given number n
#   (1, c1, c2, ...)        a sum, children sorted, no child is itself a sum
#   (2, c1, c2, ...)        a product, children sorted, no child is itself a product
#   (3, left, right)        a difference left - right
# --------------------------------------------------------------------------------------------

_LEAF, _SUM, _PROD, _SUB = 0, 1, 2, 3
_OP_TAG = {"+": _SUM, "*": _PROD, "-": _SUB}
_TAG_OP = {_SUM: "+", _PROD: "*", _SUB: "-"}

Form = tuple


def _leaf(n: int) -> Form:
    return (_LEAF, n)


def _combine(op: str, left: Form, right: Form) -> Form:
    """Canonical form of ``left <op> right`` given the canonical forms of both operands."""
    tag = _OP_TAG[op]
    if tag == _SUB:
        return (_SUB, left, right)
    children: list[Form] = []
    for part in (left, right):
        if part[0] == tag:
            children.extend(part[1:])
        else:
            children.append(part)
    children.sort()
    return (tag, *children)


def _form_value(form: Form) -> int:
    tag = form[0]
    if tag == _LEAF:
        return form[1]
    if tag == _SUM:
        return sum(_form_value(c) for c in form[1:])
    if tag == _PROD:
        v = 1
        for c in form[1:]:
            v *= _form_value(c)
        return v
    return _form_value(form[1]) - _form_value(form[2])


def form_to_string(form: Form, top: bool = True) -> str:
    """Readable string of a canonical form, e.g. ``(12-5)*3+4``-like ``3*(12-5)+4`` (sorted)."""
    tag = form[0]
    if tag == _LEAF:
        return str(form[1])
    if tag == _SUB:
        s = f"{form_to_string(form[1], False)}-{form_to_string(form[2], False)}"
    else:
        s = _TAG_OP[tag].join(form_to_string(c, False) for c in form[1:])
    return s if top else f"({s})"


def _emit_steps(form: Form, steps: list[str]) -> int:
    """Append the representative steps of ``form`` to ``steps``; return its value."""
    tag = form[0]
    if tag == _LEAF:
        return form[1]
    if tag == _SUB:
        a = _emit_steps(form[1], steps)
        b = _emit_steps(form[2], steps)
        steps.append(f"{a}-{b}={a - b}")
        return a - b
    vals = [(_emit_steps(c, steps), c) for c in form[1:]]
    # fold larger values first: 7*3=21 rather than 3*7=21 (ties broken by the form itself)
    vals.sort(key=lambda vc: (-vc[0], vc[1]))
    acc = vals[0][0]
    op = _TAG_OP[tag]
    for v, _ in vals[1:]:
        res = acc + v if tag == _SUM else acc * v
        steps.append(f"{acc}{op}{v}={res}")
        acc = res
    return acc


def representative_steps(form: Form) -> str:
    """The representative response of a canonical solution: post-order steps, ``+``/``*`` chains
    folded left over children ordered by decreasing value. Always accepted by :func:`verify`."""
    steps: list[str] = []
    _emit_steps(form, steps)
    return ",".join(steps)


# --------------------------------------------------------------------------------------------
# Solver (dynamic programme over subsets of the numbers)
# --------------------------------------------------------------------------------------------


def _submasks_pairs(mask: int) -> Iterable[tuple[int, int]]:
    """Unordered splits of ``mask`` into two non-empty disjoint sub-masks (a, b) with a < b."""
    sub = (mask - 1) & mask
    while sub:
        other = mask ^ sub
        if sub < other:
            yield sub, other
        sub = (sub - 1) & mask


def _class_table(numbers: Sequence[int]) -> dict[int, dict[Form, int]]:
    """For every non-empty subset mask: canonical form -> value of every expression that uses
    exactly that subset (each number at most once, non-negative intermediate results)."""
    n = len(numbers)
    table: dict[int, dict[Form, int]] = {}
    for i, x in enumerate(numbers):
        table[1 << i] = {_leaf(int(x)): int(x)}
    for mask in sorted(range(1, 1 << n), key=lambda m: bin(m).count("1")):
        if mask in table:
            continue
        out: dict[Form, int] = {}
        for a, b in _submasks_pairs(mask):
            for fa, va in table[a].items():
                for fb, vb in table[b].items():
                    out.setdefault(_combine("+", fa, fb), va + vb)
                    out.setdefault(_combine("*", fa, fb), va * vb)
                    if va >= vb:
                        out.setdefault(_combine("-", fa, fb), va - vb)
                    if vb >= va:
                        out.setdefault(_combine("-", fb, fa), vb - va)
        table[mask] = out
    return table


def solve_all_targets(numbers: Sequence[int]) -> dict[int, list[Form]]:
    """Every reachable value (with at least one step) -> the canonical forms of the expression
    trees reaching it (sorted). Fast (memoised per multiset of numbers); used by the generator to
    pick candidate targets. It can differ from :func:`solve` in rare cases with repeated values
    (see :func:`solve`)."""
    table = _values_to_forms(tuple(sorted(int(x) for x in numbers)))
    return {v: sorted(fs) for v, fs in table.items()}


@functools.lru_cache(maxsize=8192)
def _values_to_forms(numbers: tuple[int, ...]) -> dict[int, tuple[Form, ...]]:
    if len(numbers) < 2:
        return {}
    table = _class_table(numbers)
    by_value: dict[int, set[Form]] = {}
    for mask, forms in table.items():
        if mask & (mask - 1) == 0:  # single number: no step
            continue
        for f, v in forms.items():
            by_value.setdefault(v, set()).add(f)
    return {v: tuple(fs) for v, fs in by_value.items()}


_TreeT = tuple  # leaf: (n,), node: (op, left, right)


def _tree_key(tree: _TreeT) -> str:
    if len(tree) == 1:
        return str(tree[0])
    return f"({_tree_key(tree[1])}{tree[0]}{_tree_key(tree[2])})"


def _all_trees(numbers: Sequence[int]) -> dict[int, dict[str, tuple[_TreeT, int]]]:
    """For every subset mask: every expression tree over exactly that subset, up to commutativity
    (key -> (tree, value)); the operand with the larger (value, key) comes first in + and *."""
    n = len(numbers)
    table: dict[int, dict[str, tuple[_TreeT, int]]] = {}
    for i, x in enumerate(numbers):
        table[1 << i] = {str(int(x)): ((int(x),), int(x))}
    for mask in sorted(range(1, 1 << n), key=lambda m: bin(m).count("1")):
        if mask in table:
            continue
        out: dict[str, tuple[_TreeT, int]] = {}
        for a, b in _submasks_pairs(mask):
            for ka, (ta, va) in table[a].items():
                for kb, (tb, vb) in table[b].items():
                    first, second = (ta, va, ka), (tb, vb, kb)
                    if (vb, kb) > (va, ka):
                        first, second = second, first
                    for op in "+*":
                        t = (op, first[0], second[0])
                        out.setdefault(_tree_key(t), (t, va + vb if op == "+" else va * vb))
                    if va >= vb:
                        t = ("-", ta, tb)
                        out.setdefault(_tree_key(t), (t, va - vb))
                    if vb >= va:
                        t = ("-", tb, ta)
                        out.setdefault(_tree_key(t), (t, vb - va))
        table[mask] = out
    return table


def _trees_reaching(numbers: Sequence[int], target: int) -> list[_TreeT]:
    if len(numbers) < 2:
        return []
    found: dict[str, _TreeT] = {}
    for mask, trees in _all_trees(numbers).items():
        if mask & (mask - 1) == 0:
            continue
        for key, (t, v) in trees.items():
            if v == target:
                found[key] = t
    return [found[k] for k in sorted(found)]


def _tree_emissions(tree: _TreeT) -> list[str]:
    """Every response that writes ``tree``: one per topological order of its steps."""
    nodes: list[tuple[str, object, object, int]] = []  # (op, left, right, value); refs: int node / ("v", n)

    def flatten(t: _TreeT):
        if len(t) == 1:
            return ("v", t[0]), t[0]
        op, l, r = t
        lref, lv = flatten(l)
        rref, rv = flatten(r)
        val = lv + rv if op == "+" else lv * rv if op == "*" else lv - rv
        nodes.append((op, lref, rref, val))
        return len(nodes) - 1, val

    flatten(tree)
    out: list[str] = []

    def value(ref) -> int:
        return ref[1] if isinstance(ref, tuple) else nodes[ref][3]

    def rec(done: set[int], steps: list[str]) -> None:
        if len(done) == len(nodes):
            out.append(",".join(steps))
            return
        for i, (op, l, r, v) in enumerate(nodes):
            if i in done or (isinstance(l, int) and l not in done) or (isinstance(r, int) and r not in done):
                continue
            done.add(i)
            steps.append(f"{value(l)}{op}{value(r)}={v}")
            rec(done, steps)
            steps.pop()
            done.discard(i)

    rec(set(), [])
    return out


def _solution_forms(
    numbers: Sequence[int], target: int, forms: Sequence[Form] | None = None
) -> dict[Form, str]:
    """Canonical form -> representative response, for every canonical solution (exact).

    ``forms``: the canonical forms reaching ``target`` from :func:`solve_all_targets` (computed if
    not given). Every response's reading by the verifier is one of them; a form is a solution iff
    some response reads as it. Fast path: when each form's standard representative reads back as
    itself, the forms are exactly the solutions. Otherwise (a repeated value) every tree is
    written in every step order and read back."""
    if forms is None:
        forms = solve_all_targets(numbers).get(int(target), [])
    fast = {f: representative_steps(f) for f in forms}
    if all(verify(numbers, target, r).form == f for f, r in fast.items()):
        return fast
    best: dict[Form, str] = {}
    for tree in _trees_reaching(numbers, int(target)):
        for s in _tree_emissions(tree):
            res = verify(numbers, target, s)
            if not res.ok:  # pragma: no cover - every emission of a valid tree verifies
                raise AssertionError(f"internal error: {s!r} rejected ({res.reason})")
            if res.form not in best or (len(s), s) < (len(best[res.form]), best[res.form]):
                best[res.form] = s
    for f in best:
        rep = representative_steps(f)
        # the standard order, unless a repeated value makes the verifier read it as another solution
        if verify(numbers, target, rep).form == f:
            best[f] = rep
    return best


def solve(numbers: Sequence[int], target: int) -> list[str]:
    """Every canonical solution of (numbers, target), one representative response each, sorted.

    Exact with respect to :func:`verify`: the canonical forms of the returned responses are exactly
    the canonical forms of all responses that :func:`verify` accepts (every expression tree is
    written out in every order of its steps and read back by the verifier, so a repeated value that
    the verifier reads differently is accounted for). Canonical solutions are expression trees up to
    commutativity and associativity of ``+`` and ``*`` (see the module docstring)."""
    return sorted(_solution_forms(numbers, target).values())


def enumerate_trees(numbers: Sequence[int], target: int) -> list[str]:
    """Every solution as an expression tree, each counted once up to commutativity (the operand
    with the larger value, then the larger key, comes first in ``+`` and ``*`` steps) and up to the
    order of independent steps (post-order). Returned as step strings, sorted. Finer than
    :func:`solve` (no associativity); meant for checks and small problems."""
    result = set()
    for t in _trees_reaching(numbers, int(target)):
        steps: list[str] = []
        _tree_steps(t, steps)
        result.add(",".join(steps))
    return sorted(result)


def _tree_steps(tree: _TreeT, steps: list[str]) -> int:
    if len(tree) == 1:
        return tree[0]
    op, left, right = tree
    a = _tree_steps(left, steps)
    b = _tree_steps(right, steps)
    res = a + b if op == "+" else a * b if op == "*" else a - b
    steps.append(f"{a}{op}{b}={res}")
    return res


# --------------------------------------------------------------------------------------------
# Verifier
# --------------------------------------------------------------------------------------------

_INT = r"(0|[1-9][0-9]*)"
_STEP_RE = re.compile(rf"{_INT}([+\-*]){_INT}={_INT}")
_MAX_STEPS = 16
_MAX_DIGITS = 12


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`: ``ok`` and, when ok, the canonical form; else a reason."""

    ok: bool
    reason: str = ""
    form: Form | None = None

    @property
    def canonical(self) -> str | None:
        return None if self.form is None else form_to_string(self.form)


def parse_steps(response: str) -> list[tuple[int, str, int, int]] | None:
    """Parse ``a<op>b=c,...`` strictly; None if the text does not follow the grammar."""
    if not isinstance(response, str):
        return None
    text = response.strip()
    if not text:
        return None
    parts = text.split(",")
    if len(parts) > _MAX_STEPS:
        return None
    steps = []
    for part in parts:
        m = _STEP_RE.fullmatch(part.strip())
        if m is None:
            return None
        a, op, b, c = m.groups()
        if max(len(a), len(b), len(c)) > _MAX_DIGITS:
            return None
        steps.append((int(a), op, int(b), int(c)))
    return steps


def verify(numbers: Sequence[int], target: int, response: str) -> VerifyResult:
    """Recompute the steps of ``response`` under the rules of the module docstring.

    Never evaluates model text: the text is parsed with a strict regular grammar and each step is
    recomputed with integer arithmetic."""
    steps = parse_steps(response)
    if steps is None:
        return VerifyResult(False, "malformed")
    given = Counter(int(x) for x in numbers)
    # intermediate results not used yet: value -> stack of canonical forms (most recent last)
    pending: dict[int, list[Form]] = {}
    last_form: Form | None = None
    for idx, (a, op, b, c) in enumerate(steps):
        forms = []
        for v in (a, b):
            if pending.get(v):
                forms.append(pending[v].pop())
            elif given[v] > 0:
                given[v] -= 1
                forms.append(_leaf(v))
            else:
                return VerifyResult(False, f"step {idx + 1}: operand {v} not available")
        res = a + b if op == "+" else a * b if op == "*" else a - b
        if res < 0:
            return VerifyResult(False, f"step {idx + 1}: negative result")
        if res != c:
            return VerifyResult(False, f"step {idx + 1}: wrong arithmetic")
        last_form = _combine(op, forms[0], forms[1])
        pending.setdefault(c, []).append(last_form)
    final = steps[-1][3]
    pending[final].pop()
    if any(pending.values()):
        return VerifyResult(False, "unused intermediate result")
    if final != int(target):
        return VerifyResult(False, "wrong final result")
    return VerifyResult(True, "", last_form)


def canonical_form(numbers: Sequence[int], target: int, response: str) -> str | None:
    """Canonical string of a correct response (None if the response is not correct)."""
    return verify(numbers, target, response).canonical


# --------------------------------------------------------------------------------------------
# Problems, splits and the generator
# --------------------------------------------------------------------------------------------


def format_prompt(numbers: Sequence[int], target: int) -> str:
    """The user message of a problem, e.g. ``make 26 from 3 5 7 12``."""
    return f"make {int(target)} from {' '.join(str(int(x)) for x in numbers)}"


@dataclass(frozen=True)
class Problem:
    """One countdown problem. ``solutions``: one representative response per canonical solution."""

    prompt: str
    numbers: tuple[int, ...]
    target: int
    solutions: tuple[str, ...]
    task: str = "countdown"

    @property
    def answer(self) -> str:
        """A reference response (the first canonical solution)."""
        return self.solutions[0]

    @property
    def key(self) -> str:
        return problem_key(self.numbers, self.target)

    def check(self, response: str) -> VerifyResult:
        return verify(self.numbers, self.target, response)

    def verify(self, response: str) -> bool:
        return self.check(response).ok

    def reward(self, response: str) -> float:
        """1.0 if correct, else 0.0."""
        return 1.0 if self.verify(response) else 0.0

    def canonical(self, response: str) -> str | None:
        return self.check(response).canonical


def problem_key(numbers: Sequence[int], target: int) -> str:
    return f"{' '.join(str(int(x)) for x in sorted(numbers))}->{int(target)}"


@functools.lru_cache(maxsize=1 << 16)
def split_of(key: str, heldout_percent: int = 20) -> str:
    """Deterministic split of a problem key: ``"heldout"`` for about ``heldout_percent`` % of all
    possible problems, ``"train"`` for the rest, whatever seed or size is asked for."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return "heldout" if h % 100 < heldout_percent else "train"


@dataclass(frozen=True)
class CountdownConfig:
    """Ranges of the generator. Problems with fewer than ``min_solutions`` or more than
    ``max_solutions`` canonical solutions are skipped."""

    min_count: int = 3
    max_count: int = 3
    min_number: int = 2
    max_number: int = 12
    min_target: int = 10
    max_target: int = 40
    min_solutions: int = 2
    max_solutions: int = 1000
    heldout_percent: int = 20
    train_seed: int = 1234
    heldout_seed: int = 98765

    def validate(self) -> None:
        checks = [
            (2 <= self.min_count <= self.max_count <= 5, "need 2 <= min_count <= max_count <= 5"),
            (1 <= self.min_number <= self.max_number, "need 1 <= min_number <= max_number"),
            (0 <= self.min_target <= self.max_target, "need 0 <= min_target <= max_target"),
            (1 <= self.min_solutions <= self.max_solutions, "need 1 <= min_solutions <= max_solutions"),
            (1 <= self.heldout_percent <= 99, "heldout_percent must be in 1..99"),
            (self.train_seed != self.heldout_seed, "train_seed and heldout_seed must differ"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"CountdownConfig: {msg} (got {asdict(self)})")


@dataclass
class CountdownTask:
    """Generator of countdown problems. ``problems(split, n)`` is deterministic in the config."""

    config: CountdownConfig = field(default_factory=CountdownConfig)
    name: str = "countdown"

    def __post_init__(self) -> None:
        if isinstance(self.config, dict):
            self.config = CountdownConfig(**self.config)
        self.config.validate()

    def problems(self, split: str, n: int, seed: int | None = None) -> list[Problem]:
        """``n`` distinct problems of ``split`` ("train" or "heldout"). The seed defaults to the
        split's seed in the config; the split membership never depends on the seed."""
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        cfg = self.config
        if seed is None:
            seed = cfg.train_seed if split == "train" else cfg.heldout_seed
        rng = random.Random(f"countdown:{split}:{seed}")
        out: list[Problem] = []
        seen: set[str] = set()
        attempts = 0
        max_attempts = 200 * n + 1000
        while len(out) < n:
            attempts += 1
            if attempts > max_attempts:
                raise ValueError(
                    f"CountdownTask: found only {len(out)} of {n} {split} problems in {max_attempts} "
                    f"draws; widen the ranges of {cfg}"
                )
            count = rng.randint(cfg.min_count, cfg.max_count)
            numbers = sorted(rng.randint(cfg.min_number, cfg.max_number) for _ in range(count))
            by_target = _values_to_forms(tuple(numbers))
            candidates = []
            for t, forms in sorted(by_target.items()):
                if not (cfg.min_target <= t <= cfg.max_target) or t in numbers:
                    continue
                if not cfg.min_solutions <= len(forms) <= cfg.max_solutions:
                    continue
                key = problem_key(numbers, t)
                if key not in seen and split_of(key, cfg.heldout_percent) == split:
                    candidates.append(t)
            if not candidates:
                continue
            target = rng.choice(candidates)
            sols = tuple(sorted(_solution_forms(numbers, target, by_target[target]).values()))
            if not cfg.min_solutions <= len(sols) <= cfg.max_solutions:
                continue  # rare: a repeated value merges or splits solutions (see solve)
            seen.add(problem_key(numbers, target))
            out.append(Problem(format_prompt(numbers, target), tuple(numbers), target, sols))
        return out

    def verify(self, problem: Problem, response: str) -> bool:
        return problem.verify(response)


def distinct_correct_solutions(problem: Problem, responses: Iterable[str]) -> int:
    """Number of distinct canonical solutions among the correct ``responses`` of ``problem``."""
    forms = set()
    for r in responses:
        res = problem.check(r)
        if res.ok:
            forms.add(res.form)
    return len(forms)
