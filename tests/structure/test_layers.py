"""The map in docs/ARCHITECTURE.md holds: imports go one way (launch -> ui -> engine -> annotators,
demo -> engine), no module imports another that imports it back (imports inside functions
count), `import engine` loads neither the demo nor the trainer, and an annotator's declaration
does not depend on what was imported before it."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "annotators", "ui", "demo")
# what each layer may import of the project (DESIGN.md's table); itself is always allowed
ALLOWED = {"annotators": set(), "engine": {"annotators"}, "demo": {"engine", "annotators"},
           "ui": {"engine", "annotators", "demo"}}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file (function bodies included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    out.add(sub)
                elif target in modules:
                    out.add(target)
    out.discard(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_scan_sees_imports_inside_functions_and_relative_ones():
    graph = _graph()
    assert "engine.loading.single_file" in graph["engine.loading"]        # from .single_file import ...
    assert "engine.fidelity" in graph["demo"]                               # from engine import fidelity
    assert "annotators.image" in graph["engine.fidelity"]                   # a lazy import inside score()


def test_no_import_cycle_anywhere():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_go_one_way():
    wrong = [(name, target) for name, targets in _graph().items() for target in targets
             if target.split(".")[0] != name.split(".")[0]
             and target.split(".")[0] not in ALLOWED[name.split(".")[0]]]
    assert wrong == []


def test_the_runtime_does_not_import_the_trainer():
    runtime = {n: t for n, t in _graph().items() if n.startswith("engine") and not n.startswith("engine.training")}
    assert [(n, t) for n, ts in runtime.items() for t in ts if t.startswith("engine.training")] == []


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_import_engine_loads_neither_the_demo_nor_the_trainer():
    loaded = json.loads(_fresh("import json, sys, engine; print(json.dumps(sorted(sys.modules)))"))
    assert [m for m in loaded if m == "demo" or m.startswith(("demo.", "engine.training"))] == []
    assert "engine.loading" in loaded


@pytest.mark.slow
def test_an_annotators_declaration_is_the_same_whatever_was_imported_first():
    spec = "print(json.dumps(annotators.spec('segmentation_paint')))"
    alone = _fresh(f"import json, annotators; {spec}")
    after_all = _fresh(f"import json, engine, demo, ui.catalog, annotators; {spec}")
    assert alone == after_all
    assert json.loads(alone)["params"][0]["choices"] == ["ade20k", "demo"]


def test_the_gui_uses_only_the_public_names_of_the_engine_and_the_annotators():
    import annotators
    import engine
    public = {"engine": set(engine.__all__), "annotators": set(annotators.__all__)}
    reaches = []
    for path in sorted((ROOT / "ui").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                reaches += [(path.name, a.name) for a in node.names if a.name.startswith(("engine.", "annotators."))]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in public:
                if node.module not in public:
                    reaches.append((path.name, node.module))
                else:
                    reaches += [(path.name, f"{node.module}.{a.name}") for a in node.names
                                if a.name not in public[node.module]]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in public:
                if node.attr not in public[node.value.id]:
                    reaches.append((path.name, f"{node.value.id}.{node.attr}"))
            elif isinstance(node, ast.ExceptHandler) and "ImportError" in ast.dump(node.type or ast.Name("")):
                reaches.append((path.name, "except ImportError"))
    assert reaches == []
