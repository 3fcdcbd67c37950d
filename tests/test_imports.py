"""The package's import graph: no cycles (module-level or through lazy imports inside functions),
layers import only layers below them, and every module imports on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "leakaudit"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = f
    return mods


MODULES = _modules()


def _imports(path: Path, *, module_level: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if module_level:
        nodes, stack = [], list(tree.body)
        while stack:  # module body, including top-level if/try blocks, not function bodies
            n = stack.pop()
            nodes.append(n)
            if isinstance(n, (ast.If, ast.Try)):
                stack += n.body + n.orelse + getattr(n, "finalbody", [])
                for h in getattr(n, "handlers", []):
                    stack += h.body
    else:
        nodes = list(ast.walk(tree))
    out = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.add(n.module)
            out |= {f"{n.module}.{a.name}" for a in n.names}
    return {m for m in out if m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _graph(module_level: bool) -> dict[str, set[str]]:
    g = {m: _imports(f, module_level=module_level) - {m} for m, f in MODULES.items()}
    # importing a.b.c runs a/__init__ and a/b/__init__: not an edge we count as a dependency
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in g.items()}


def test_cycle_finder_finds_a_cycle():  # negative control for the checker itself
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module_level", [True, False], ids=["module-level", "with-lazy-imports"])
def test_no_import_cycles(module_level):
    assert _cycles(_graph(module_level)) == []


LOWER = ("leakaudit.metrics", "leakaudit.signals", "leakaudit.targets", "leakaudit.corpus",
         "leakaudit.attacks", "leakaudit.training", "leakaudit.defenses")


def _under(mod: str, pkg: str) -> bool:
    return mod == pkg or mod.startswith(pkg + ".")


def test_layers():
    g = _graph(module_level=False)
    bad = []
    for m, deps in g.items():
        for d in deps:
            if _under(d, "leakaudit.cli") and not (_under(m, "leakaudit.commands") or m == "leakaudit.cli"):
                bad.append((m, d))  # nothing imports cli.py
            if _under(d, "leakaudit.commands") and not (_under(m, "leakaudit.commands") or m == "leakaudit.cli"):
                bad.append((m, d))  # nor the commands: what a command does lives in the layers below
            if _under(d, "leakaudit.lab") and not (_under(m, "leakaudit.lab") or m == "leakaudit.cli"
                                                   or _under(m, "leakaudit.commands")):
                bad.append((m, d))  # only the CLI uses the lab
            if any(_under(m, low) for low in LOWER) and (
                    _under(d, "leakaudit.report")
                    or _under(d, "leakaudit.triage") or _under(d, "leakaudit.audits")):
                bad.append((m, d))  # lower layers do not reach up to reporting/orchestration
    assert not bad, bad
    metrics = {d for m, f in MODULES.items() if _under(m, "leakaudit.metrics")
               for d in _imports(f, module_level=False)}
    assert all(_under(d, "leakaudit.metrics") or d == "leakaudit.errors" for d in metrics), metrics


@pytest.mark.slow
def test_every_module_imports_in_isolation():
    """Each module in a fresh interpreter (one subprocess each, ~0.5-3 s apiece)."""
    failures = []
    for name in sorted(MODULES):
        r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                           env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, timeout=120)
        if r.returncode:
            failures.append((name, r.stderr.strip().splitlines()[-1:]))
    assert not failures, failures


def test_cli_is_thin():
    """cli.py only assembles the app: at most 80 lines, no function body over 40 lines, and it
    imports nothing but the command modules (every audit and its arguments live there)."""
    text = (PKG / "cli.py").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 80, len(text.splitlines())
    tree = ast.parse(text)
    long = [(n.name, n.end_lineno - n.body[0].lineno + 1) for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.body[0].lineno + 1 > 40]
    assert not long, long
    deps = _imports(PKG / "cli.py", module_level=False)
    assert deps and all(_under(d, "leakaudit.commands") for d in deps), deps


def _commands(cmd, path=()):
    """``(command path, click command)`` of every group and command under ``cmd``."""
    for name, sub in getattr(cmd, "commands", {}).items():
        yield (*path, name), sub
        yield from _commands(sub, (*path, name))


def test_every_command_is_defined_in_commands():
    from typer.main import get_command

    from leakaudit.cli import app

    homes = {" ".join(p): c.callback.__module__ for p, c in _commands(get_command(app))
             if c.callback is not None}
    assert {"lab", "lab defenses", "lab endpoint", "lab after-training", "extract", "memorization",
            "canaries insert", "canaries exposure", "invert", "membership llm",
            "membership classifier", "membership scores", "membership lab", "report",
            "version"} <= set(homes), sorted(homes)
    assert {k: v for k, v in homes.items() if not v.startswith("leakaudit.commands.")} == {}
    # negative control: the root's own callback (the global options) is cli.py's
    assert get_command(app).callback.__module__ == "leakaudit.cli"
