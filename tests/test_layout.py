"""The package's layout: the library never imports the CLI, no module-level import cycle,
and loading a run to check or solve it leaves the trainer unloaded."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_api import loaded_modules

import eqprop_cli

PACKAGE = Path(eqprop_cli.__file__).parent


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, top_level: bool) -> set[str]:
    """The eqprop_cli modules that ``name`` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)  # a submodule, if it is one
    return {m for m in found if m == "eqprop_cli" or m.startswith("eqprop_cli.")}


def test_library_modules_never_import_the_cli():
    modules = _modules()
    library = {
        n: p
        for n, p in modules.items()
        if not n.startswith("eqprop_cli.cli") and n != "eqprop_cli.__main__"  # `python -m`
    }
    assert "eqprop_cli.sweep.execute" in library and "eqprop_cli.learn.run" in library
    offenders = {
        name: sorted(m for m in _imports(name, path, False) if m.startswith("eqprop_cli.cli"))
        for name, path in library.items()
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_no_module_level_import_cycle():
    modules = _modules()
    graph = {
        name: {m for m in _imports(name, path, True) if m in modules and m != name}
        for name, path in modules.items()
    }
    graph["eqprop_cli"] = set()  # the package re-exports the API; its parts never need it
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_import_walk_resolves_relative_imports(tmp_path):
    """What the cycle check walks: relative imports resolved, in modules and packages."""
    a = tmp_path / "a.py"
    a.write_text("from .b import x\nfrom . import c\n")
    assert _imports("eqprop_cli.pkg.a", a, True) >= {"eqprop_cli.pkg.b", "eqprop_cli.pkg.c"}
    init = tmp_path / "__init__.py"
    init.write_text("from ..circuit import spec\n")
    assert "eqprop_cli.circuit.spec" in _imports("eqprop_cli.pkg", init, True)


def test_loading_a_run_to_check_or_solve_it_does_not_import_the_trainer(tmp_path):
    from eqprop_cli.learn.run import run_training

    run = tmp_path / "run"
    circuit = PACKAGE.parent / "circuits" / "xor.toml"
    run_training(circuit, run, ["training.epochs=1"])
    loaded = loaded_modules(
        "from eqprop_cli.runs.rundir import load_target\n"
        "from eqprop_cli import solve\n"
        f"loaded = load_target({str(run)!r})\n"
        "assert loaded.checkpoint is not None\n"
        "solve(loaded.network, [[0.0, 1.0]])"
    )
    assert "eqprop_cli.runs.rundir" in loaded
    for heavy in ("learn.train", "learn.run", "learn.optim", "hardware.spice", "cli"):
        assert f"eqprop_cli.{heavy}'" not in loaded, heavy
