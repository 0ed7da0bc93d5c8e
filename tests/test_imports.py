"""No import cycle inside the ``spde_tokens`` package, counting every import statement; and what a fresh
``import spde_tokens`` leaves unloaded (the end of this file).

The graph is built with ``ast`` from the source files, so it sees what running the code may not: imports at the top
of a module, inside functions, under ``if TYPE_CHECKING:``, relative imports, and ``from spde_tokens import x``
(an edge to the submodule ``spde_tokens.x`` when that is a module, else to the package ``spde_tokens`` itself).
Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``; those implicit parent imports are not edges
(they would put every submodule in a cycle with a package that imports it).
"""

import ast
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1] / "spde_tokens"
PACKAGE = ROOT.name


def module_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Dotted module name → source file, for every module of the package at ``root`` (packages by their
    ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _target(name: str, modules: dict) -> str | None:
    """The module of the package that ``import name`` runs last: name itself, or its closest parent in the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: pathlib.Path, modules: dict) -> set[str]:
    """The package modules that module ``name`` imports, from every import statement anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(_target(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: "from . import x", "from ..grids import y"
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in modules else _target(source, modules))
    out.discard(None)
    out.discard(name)
    return out


def import_graph(root: pathlib.Path = ROOT) -> dict[str, set[str]]:
    """Module → the package modules it imports."""
    modules = module_files(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a → … → a) per strongly connected component with more than one module (Tarjan)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A path start → … → start inside a strongly connected component (breadth-first, so a shortest one)."""
    start = min(component)
    previous = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                path = [v]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if w not in previous:
                previous[w] = v
                queue.append(w)
    raise AssertionError(f"{component} is not strongly connected")


def _describe(found: list[list[str]]) -> str:
    return "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


# ---- the graph builder on a package of its own ------------------------------------------------------------------
def test_every_form_of_import_is_an_edge(tmp_path):
    """Top level, inside a function, under TYPE_CHECKING, relative, ``from pkg import module`` and
    ``from pkg import attribute`` each give the edge they should; a cycle through them is found and listed."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "__version__ = '1'\nfrom spde_tokens import a\n",
        "a.py": "import spde_tokens.b\n",
        "b.py": "def f():\n    from .sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..d import thing\n",
        "d.py": "from spde_tokens import e, __version__\n",
        "e.py": "import numpy\n",
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    graph = import_graph(pkg)
    assert graph == {"spde_tokens": {"spde_tokens.a"}, "spde_tokens.a": {"spde_tokens.b"},
                     "spde_tokens.b": {"spde_tokens.sub.c"}, "spde_tokens.sub": set(),
                     "spde_tokens.sub.c": {"spde_tokens.d"}, "spde_tokens.d": {"spde_tokens", "spde_tokens.e"},
                     "spde_tokens.e": set()}
    assert cycles(graph) == [["spde_tokens", "spde_tokens.a", "spde_tokens.b", "spde_tokens.sub.c", "spde_tokens.d",
                              "spde_tokens"]]
    del graph["spde_tokens.d"]
    assert cycles(graph) == []


# ---- the package ------------------------------------------------------------------------------------------------
def test_no_import_cycle_in_validation():
    graph = import_graph()
    inside = {k: {v for v in vs if v.startswith(f"{PACKAGE}.validation")} for k, vs in graph.items()
              if k.startswith(f"{PACKAGE}.validation")}
    found = cycles(inside)
    assert not found, _describe(found)


def test_no_import_cycle_in_the_package():
    found = cycles(import_graph())
    assert not found, _describe(found)


# ---- what `import spde_tokens` loads (docs/guide.md, 'Install') -------------------------------------------------
#: modules a fresh `import spde_tokens` must not load: each is imported where it is first needed (pyfftw by the
#: first CircleGrid: its interfaces pull in dask.array and pandas; matplotlib by the plots; dask by run_ensemble;
#: tqdm and threadpoolctl by the first run; scipy — special, sparse, linalg — by the first Bessel weight, spectral
#: transport operator or Gauss rule)
DEFERRED = ("pyfftw", "matplotlib", "dask", "tqdm", "threadpoolctl", "scipy")


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter with this checkout first on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT.parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=True)


def test_import_does_not_load_the_deferred_modules():
    """A structural check, not a timing: none of DEFERRED (nor any of their submodules) is in sys.modules after
    a fresh ``import spde_tokens``; a CircleGrid then brings pyfftw in (so the check sees real imports)."""
    code = ("import sys, spde_tokens\n"
            f"names = {DEFERRED!r}\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & set(names)))\n"
            "spde_tokens.CircleGrid(8)\n"
            "print('pyfftw' in sys.modules)\n")
    loaded, after_circle = _fresh_python(code).stdout.splitlines()
    assert loaded == "[]", f"import spde_tokens loaded {loaded}"
    assert after_circle == "True"


def test_building_a_sphere_grid_prints_nothing():
    """shtns prints a banner on import; SphereGrid keeps it out of standard output."""
    out = _fresh_python("import spde_tokens\nspde_tokens.SphereGrid(8)\n").stdout
    assert out == ""
