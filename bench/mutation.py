"""Mutation testing of the rules, the deadline code and storage: does a small bug fail a test?

Run outside CI (it runs the chosen tests once per mutant; an hour or more for
everything):

    python bench/mutation.py [--target bot/rules] [--target bot/decide/incident/deadlines.py]
                             [--limit N] [--seed S] [--timeout SECONDS]

Each mutant is one small change a person could make by mistake, applied to
one line of a copy of the repository (never to the work tree): a comparison
turned (`<` to `<=`, `==` to `!=`), `and`/`or` swapped, a `not` dropped, a
number moved by one, `True`/`False` swapped, a `.where(…)`/`.filter(…)`
dropped from a query, a `return X` made `return None`. The tests that concern
the target (`TESTS` below, fastest first, `-x`) run against it; a mutant is
killed when they fail or time out, and survives when they pass. The score
is killed / (killed + survived); the survivors are printed with file, line
and the change, which is what a reviewer reads to write the missing test.

Why not mutmut: it rewrites the work tree in place and runs the whole suite
per mutant by default; here the suite starts servers and takes minutes, so a
mutant runs only the test files of its target, in a throwaway copy.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_TARGETS = ("bot/rules", "bot/decide/incident/deadlines.py",
                   "bot/decide/incident/reminders.py", "bot/decide/incident/timeliness.py")

# Test files per target (a path prefix), fastest first: `-x` stops at the first failure.
TESTS: dict[str, tuple[str, ...]] = {
    "bot/parse/automatic.py": ("tests/test_hygiene.py", "tests/test_own_corpus.py",
                             "tests/test_mail_hygiene_flow.py"),
    "bot/rules/formfields.py": ("tests/test_forms.py", "tests/test_walking_skeleton.py",
                                "tests/test_form_shapes_e2e.py"),
    "bot/rules/commands.py": ("tests/test_commands.py", "tests/test_staff_commands.py"),
    "bot/rules/": ("tests/test_dates.py", "tests/test_commands.py", "tests/test_reports.py",
                   "tests/test_walking_skeleton.py", "tests/test_deadlines_and_reminders.py",
                   "tests/test_final_report.py", "tests/test_disclosure.py",
                   "tests/test_notices.py"),
    "bot/decide/incident/timeliness.py": ("tests/test_walking_skeleton.py",
                                          "tests/test_operator_view.py"),
    "bot/decide/": ("tests/test_deadlines_and_reminders.py", "tests/test_staff_commands.py",
                    "tests/test_notices.py", "tests/test_disclosure.py",
                    "tests/test_final_report.py"),
    "storage/": ("tests/test_rawstore.py", "tests/test_spool.py", "tests/test_writelock.py",
                 "tests/test_migrations.py", "tests/test_certificate_lists_e2e.py",
                 "tests/test_deadlines_and_reminders.py", "tests/test_operator_view.py",
                 "tests/test_crash_safety.py"),
}

SWAP_COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                ast.Is: ast.IsNot, ast.IsNot: ast.Is}
QUERY_METHODS = {"where", "filter", "filter_by"}


@dataclass(frozen=True)
class Mutant:
    path: str
    line: int
    what: str
    index: int  # the n-th mutation point of its file


class _Mutator(ast.NodeTransformer):
    """Visits every mutation point; applies the one numbered `target` (or none: counting)."""

    def __init__(self, target: int | None) -> None:
        self.target = target
        self.points: list[tuple[int, str]] = []

    def _hit(self, node: ast.AST, what: str) -> bool:
        self.points.append((getattr(node, "lineno", 0), what))
        return len(self.points) - 1 == self.target

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            swap = SWAP_COMPARE.get(type(op))
            if swap and self._hit(node, f"{type(op).__name__} -> {swap.__name__}"):
                node.ops[i] = swap()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        if self._hit(node, f"{type(node.op).__name__} -> {type(other).__name__}"):
            node.op = other
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._hit(node, "not dropped"):
            return node.operand
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, bool):
            if self._hit(node, f"{node.value} -> {not node.value}"):
                return ast.copy_location(ast.Constant(not node.value), node)
        elif isinstance(node.value, int) and self._hit(node, f"{node.value} -> {node.value + 1}"):
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr in QUERY_METHODS
                and self._hit(node, f".{func.attr}(…) dropped")):
            return func.value
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        if node.value is not None and not (isinstance(node.value, ast.Constant)
                                           and node.value.value is None) \
                and self._hit(node, "return value -> None"):
            node.value = None
        return node

    def _body_only(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> ast.AST:
        # Decorators (`@dataclass(frozen=True)`) and annotations change no behaviour a
        # test could see: mutating them only adds equivalent mutants.
        node.body = [self.visit(child) for child in node.body]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _body_only

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node  # f-strings: messages, not logic

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant):
            return node  # docstrings
        return self.generic_visit(node)


def mutants_of(path: Path) -> list[Mutant]:
    counter = _Mutator(None)
    counter.visit(ast.parse(path.read_text()))
    rel = str(path.relative_to(ROOT))
    return [Mutant(rel, line, what, i) for i, (line, what) in enumerate(counter.points)]


def mutated_source(path: Path, index: int) -> str:
    tree = ast.parse(path.read_text())
    mutator = _Mutator(index)
    tree = mutator.visit(tree)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree)


def tests_for(rel: str) -> tuple[str, ...]:
    best = max((prefix for prefix in TESTS if rel.startswith(prefix)), key=len, default=None)
    if best is None:
        raise SystemExit(f"no tests mapped for {rel}: add it to TESTS")
    return TESTS[best]


def files_of(targets: list[str]) -> Iterator[Path]:
    for target in targets:
        path = ROOT / target
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if p.name != "__init__.py"
                              and "migrations" not in p.parts)
        else:
            yield path


def run(copy: Path, mutant: Mutant, timeout: float) -> tuple[str, float]:
    source = ROOT / mutant.path
    target = copy / mutant.path
    target.write_text(mutated_source(source, mutant.index))
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p",
                               "no:cacheprovider", *tests_for(mutant.path)], cwd=copy, env=env,
                              capture_output=True, timeout=timeout)
        verdict = "survived" if done.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        verdict = "killed (timeout)"
    finally:
        shutil.copyfile(source, target)
    return verdict, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", help="file or folder (repeatable)")
    parser.add_argument("--limit", type=int, default=0, help="a random sample of N mutants")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    args = parser.parse_args()
    mutants = [m for path in files_of(args.target or list(DEFAULT_TARGETS))
               for m in mutants_of(path)]
    if args.limit and args.limit < len(mutants):
        mutants = sorted(random.Random(args.seed).sample(mutants, args.limit),
                         key=lambda m: (m.path, m.index))
    if args.list:
        for m in mutants:
            print(f"{m.path}:{m.line}: {m.what}")
        return
    with tempfile.TemporaryDirectory(prefix="rootnotify-mutation-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
            ".git", "var", "__pycache__", "*.egg-info", ".ruff_cache"))
        killed, survived = 0, []
        for n, m in enumerate(mutants, 1):
            verdict, seconds = run(copy, m, args.timeout)
            print(f"[{n}/{len(mutants)}] {verdict:16} {seconds:6.1f}s  {m.path}:{m.line}: {m.what}",
                  flush=True)
            if verdict == "survived":
                survived.append(m)
            else:
                killed += 1
    total = killed + len(survived)
    print(f"\nmutation score: {killed}/{total} killed ({killed / max(total, 1):.0%})")
    for m in survived:
        print(f"survived: {m.path}:{m.line}: {m.what}")


if __name__ == "__main__":
    main()
