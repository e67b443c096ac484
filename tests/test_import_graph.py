"""The package has no import cycle, and its start-up modules import no torch.

The graph is built from the source (ast), module to module: ``from affectflow.x import y``
is an edge to ``affectflow.x.y`` when that is a module, else to ``affectflow.x``. Imports inside
functions count too: a cycle through a lazy import still ties two modules together.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, read from the source of src/affectflow."""
    modules = {_module_name(p): p for p in (SRC / "affectflow").rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # import a.b.c where only a.b is a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_registries_are_leaves():
    graph = import_graph()
    for registry in ("affectflow.registry", "affectflow.models.registry", "affectflow.features.registry",
                     "affectflow.faces.registry"):
        inside = {m for m in graph[registry] if m != "affectflow.registry"}
        assert not inside, f"{registry} imports {sorted(inside)}"


def test_the_start_up_modules_import_no_torch():
    # What the workflow's DAG build imports (workflow/rules/common.smk): no torch, so the DAG is
    # built in seconds and without a GPU stack.
    # Calling the checks too: a lazy torch import inside one of them would count.
    code = ("import sys, yaml, affectflow.config, affectflow.config.names, affectflow.config.runs as runs, "
            "affectflow.config.faces, affectflow.config.resources; "
            "from affectflow.config.names import registered; "
            "[registered(f) for f in ('detectors', 'backbones', 'models', 'losses', 'ensemblers')]; "
            "c = yaml.safe_load(open('config/recipes/au_deng2023.yaml')); "
            "runs.check_runs(runs.without_branch_keys(c['train']), c['features']); "
            "[runs.run_folds(r, 2) for r in c['train']['runs'].values()]; "
            "runs.branch_model_paths({'init_branches': ['a', None]}, 'results/x/train', 0); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_names_read_from_source_are_the_registered_names():
    from affectflow.config.names import registered
    from affectflow.ensemble import ENSEMBLERS
    from affectflow.faces import DETECTORS
    from affectflow.features import BACKBONES
    from affectflow.models import MODELS
    from affectflow.training.losses import LOSSES

    assert registered("models") == MODELS.names()
    assert registered("backbones") == BACKBONES.names()
    assert registered("detectors") == DETECTORS.names()
    assert registered("ensemblers") == ENSEMBLERS.names()
    assert registered("losses") == LOSSES.names()
