"""The package's imports go one way: no module imports (at its top or inside a function) one that imports it back,
no module borrows another's private names, figures are drawn only in plots/, and the layers hold."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "synchformer"

# bottom up: a module may import its own layer and the ones below, never one above
LAYERS = [
    {"constants", "errors", "_lazy", "interrupts", "__init__"},
    {"io"},
    {"features"},
    {"model"},
    {"inference"},
    {"plots"},
    {"training"},
    {"cli", "__main__"},
]
# within inference, bottom up (a module may import the ones before it)
INFERENCE = ["batch_io", "checks", "distributions", "tolerance", "drift", "verdict", "pooling", "stream", "window",
             "fine", "analysis", "search", "analyze", "explain", "embed", "baseline", "workers", "batching", "score",
             "predict", "monitor"]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path):
    """(imported module, imported name or None, line) of every synchformer import in the module, wherever it is."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "synchformer":
                    yield a.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[:len(up) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if base.split(".")[0] != "synchformer":
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                yield (full, None, node.lineno) if full in MODULES else (base, a.name, node.lineno)


EDGES = defaultdict(set)
NAMES = []
for _name, _path in MODULES.items():
    for _target, _what, _line in _imports(_name, _path):
        if _target in MODULES and _target != _name:
            EDGES[_name].add(_target)
            NAMES.append((_name, _target, _what, _line))


def _layer(name: str) -> int:
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return next(i for i, group in enumerate(LAYERS) if top in group)


def test_no_module_imports_one_that_imports_it_back():
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in EDGES.get(v, ()):
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
                cycles.append(sorted(comp))

    for v in MODULES:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_private_name_is_borrowed_across_modules():
    borrowed = [f"{a}:{line} takes {t}.{w}" for a, t, w, line in NAMES
                if w is not None and w.startswith("_") and not w.startswith("__")]
    assert not borrowed, borrowed


def test_imports_only_go_down_the_layers():
    up = [f"{a} -> {t}" for a, targets in EDGES.items() for t in targets
          if t != "synchformer" and a != "synchformer" and _layer(t) > _layer(a)]
    assert not up, up
    order = {m: i for i, m in enumerate(INFERENCE)}
    inside = [f"{a} -> {t}" for a, targets in EDGES.items() for t in targets
              if a.startswith("synchformer.inference.") and t.startswith("synchformer.inference.")
              and order[t.rsplit(".", 1)[1]] > order[a.rsplit(".", 1)[1]]]
    assert not inside, inside


def _imports_matplotlib(path: Path) -> bool:
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import) and any(a.name.split(".")[0] == "matplotlib" for a in n.names):
            return True
        if isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "matplotlib":
            return True
    return False


def test_figures_are_drawn_only_in_plots():
    drawing = [str(p.relative_to(PACKAGE)) for name, p in MODULES.items()
               if not name.startswith("synchformer.plots") and _imports_matplotlib(p)]
    assert not drawing, drawing


def test_every_inference_module_has_its_place():
    assert {n.rsplit(".", 1)[1] for n in MODULES if n.startswith("synchformer.inference.")} == set(INFERENCE)
