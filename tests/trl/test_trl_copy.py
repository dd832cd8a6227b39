"""The copy of TRL code in ``steer/integrations/trl/_trl_copy.py`` against the installed TRL.

- The installed ``GRPOTrainer._compute_loss`` is the one the copy was made from (its source hash
  and its line range are those recorded in the copy's header).
- Every statement of the copied functions is a statement of the upstream function (``trainer`` for
  ``self``; formatting and comments aside), or is marked ``# differs: N`` with N a difference the
  header explains, and no marked statement is in fact unchanged.
- No function of the integration is longer than 80 lines.

The parity tests (test_loss_parity.py) check that what the copy computes equals stock TRL.
"""

from __future__ import annotations

import ast
import copy
import inspect
import re
import textwrap
from pathlib import Path

import pytest
from trl import GRPOTrainer

from steer.integrations.trl import _trl_copy

COPY_FILE = Path(_trl_copy.__file__)
REVIEW = (
    f"TRL's GRPOTrainer._compute_loss is not the one {COPY_FILE} was copied from ({_trl_copy.UPSTREAM}). "
    "Review the copy against the installed TRL, update it, its line numbers and UPSTREAM_SHA256, and rerun "
    "tests/trl/test_loss_parity.py"
)
MARK = re.compile(r"#\s*differs:\s*(\d+)")


def test_installed_trl_is_the_version_copied():
    import trl

    assert trl.__version__.split(".")[:2] == _trl_copy.TRL_VERSION.split(".")[:2], REVIEW
    assert _trl_copy.upstream_sha256() == _trl_copy.UPSTREAM_SHA256, REVIEW


def test_header_line_range_matches_upstream():
    lines, start = inspect.getsourcelines(GRPOTrainer._compute_loss)
    recorded = re.search(r"lines (\d+)-(\d+)", _trl_copy.UPSTREAM)
    assert recorded is not None
    assert (int(recorded[1]), int(recorded[2])) == (start, start + len(lines) - 1), REVIEW


def test_the_hash_guard_fails_when_upstream_changes(monkeypatch):
    def _compute_loss(self, model, inputs):  # stands for a changed upstream function
        return None

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", _compute_loss)
    assert _trl_copy.upstream_sha256() != _trl_copy.UPSTREAM_SHA256


class _SelfForTrainer(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(id="self", ctx=node.ctx) if node.id == "trainer" else node


def _key(node: ast.AST) -> str:
    return ast.dump(_SelfForTrainer().visit(copy.deepcopy(node)))


def _units(tree: ast.AST):
    """``(key, node)`` for each statement and each ``if`` condition under ``tree``."""
    for node in ast.walk(tree):
        if node is tree or isinstance(node, (ast.FunctionDef, ast.Pass)):
            continue
        if isinstance(node, ast.If):
            yield "if " + _key(node.test), node
        elif isinstance(node, ast.stmt) and not isinstance(node, (ast.For, ast.While, ast.With, ast.Try)):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # docstring
            yield _key(node), node


def _plumbing(node: ast.AST) -> bool:
    """A return that only hands names (or the PolicyInputs record) back to the trainer."""
    if not isinstance(node, ast.Return) or node.value is None:
        return False
    v = node.value
    if isinstance(v, ast.Name):
        return True
    if isinstance(v, ast.Tuple):
        return all(isinstance(e, ast.Name) for e in v.elts)
    return isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "PolicyInputs"


def _explained_differences() -> set[int]:
    header = _trl_copy.__doc__.split("Lines that differ", 1)[1]
    return {int(n) for n in re.findall(r"^(\d+)\. ", header, flags=re.M)}


def _check_copy(copy_source: str, upstream_source: str, names) -> list[str]:
    """The problems of the copied functions ``names`` in ``copy_source`` against ``upstream_source``."""
    upstream = {k for k, _ in _units(ast.parse(textwrap.dedent(upstream_source)))}
    lines = copy_source.splitlines()
    funcs = {n.name: n for n in ast.parse(copy_source).body if isinstance(n, ast.FunctionDef)}
    explained = _explained_differences()
    problems = []
    for name in names:
        for key, node in _units(funcs[name]):
            if _plumbing(node):
                continue
            mark = MARK.search(lines[node.lineno - 1])
            where = f"{name}, line {node.lineno}: {lines[node.lineno - 1].strip()}"
            if mark is None and key not in upstream:
                problems.append(f"not in upstream and not marked '# differs: N': {where}")
            elif mark is not None and key in upstream:
                problems.append(f"marked as differing but identical to upstream: {where}")
            elif mark is not None and int(mark[1]) not in explained:
                problems.append(f"marked with a difference the header does not explain: {where}")
    return problems


def test_every_copied_statement_is_upstream_or_a_listed_difference():
    upstream = inspect.getsource(GRPOTrainer._compute_loss)
    problems = _check_copy(COPY_FILE.read_text(), upstream, _trl_copy.COPIED)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # an edit to a copied line
        (
            "per_token_loss = per_token_loss * entropy_mask",
            "per_token_loss = per_token_loss * 2",
            "not in upstream",
        ),
        # a new unmarked line
        (
            "    log_ratio = per_token_logps - old_per_token_logps\n",
            "    log_ratio = per_token_logps - old_per_token_logps\n    log_ratio = log_ratio.clamp(max=20)\n",
            "not in upstream",
        ),
        # a stale marker
        (
            "loss = (per_token_loss * mask).sum() / normalizer",
            "loss = (per_token_loss * mask).sum() / normalizer  # differs: 5",
            "identical to upstream",
        ),
        # a marker no difference in the header explains
        ("tokens_scale  # differs: 5", "tokens_scale  # differs: 99", "does not explain"),
    ],
)
def test_the_statement_guard_catches_edits(old, new, expected):
    source = COPY_FILE.read_text()
    assert old in source
    problems = _check_copy(
        source.replace(old, new, 1), inspect.getsource(GRPOTrainer._compute_loss), _trl_copy.COPIED
    )
    assert any(expected in p for p in problems), problems


def test_no_function_of_the_integration_over_80_lines():
    folder = COPY_FILE.parent
    long = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.name}:{node.name} ({n} lines)")
    assert not long, long
