"""The receiver's shape, checked from its source: no import circles among
its modules, and no module reaching into another object's private members.

Both checks read the source (the AST), as /work/shared/tools/import_cycles.py
does: every import counts, also one inside a function or under
``TYPE_CHECKING`` (a lazy import hides a circle from Python, not from a
reader).  ``from pkg import name`` counts as depending on ``pkg`` (its
``__init__``) and on ``pkg.name``.
"""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "receiver"

def _modules(root: str, package: str) -> dict[str, str]:
    mods = {}
    for dirpath, _, files in os.walk(os.path.join(root, package)):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                if name.endswith(".__init__"):
                    name = name[: -len(".__init__")]
                mods[name] = path
    return mods


def import_graph(root: str = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (statically, anywhere in it)."""
    mods = _modules(root, package)
    graph = {}
    for name, path in mods.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        here = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                deps.add(base)
                deps.update(base + "." + a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def private_reach_ins(root: str = ROOT, package: str = PACKAGE) -> list[str]:
    """"path: expression" for each ``x._name`` whose ``x`` is not ``self``
    or ``cls``, and each ``from m import _name`` (dunders are not private)."""
    found = []
    for path in sorted(_modules(root, package).values()):
        rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                v = node.value
                if not (isinstance(v, ast.Name) and v.id in ("self", "cls")):
                    found.append("%s: %s" % (rel, ast.unparse(node)))
            elif isinstance(node, ast.ImportFrom):
                found += ["%s: from %s import %s" % (rel, node.module, a.name)
                          for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    return found


# -- the checks on the tree -------------------------------------------------------------


def test_receiver_has_no_import_circles():
    found = [sorted(c) for c in circles(import_graph())]
    assert found == [], "import circles in receiver/: %s" % found


def test_receiver_reaches_into_no_private_members():
    found = private_reach_ins()
    assert found == [], "private members used from outside: %s (give them a public name)" \
        % found


def test_the_app_is_above_what_it_wires():
    """Listeners, the console and the shared policy never import the
    application object: it wires them, not the other way round."""
    graph = import_graph()
    importers = sorted(m for m, deps in graph.items() if "receiver.app" in deps)
    assert importers == ["receiver.cli", "receiver.demo", "receiver.testing"], importers


# -- the checks themselves, fed small trees -----------------------------------------------


def _tree(tmp_path, files: dict[str, str]) -> str:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(tmp_path)


def test_a_lazy_or_package_import_closes_a_circle(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "from pkg import a\n",
        "pkg/a.py": "def f():\n    from pkg.b import g  # lazy: still a dependency\n",
        "pkg/b.py": "from pkg import c\n",
        "pkg/c.py": "import os\n",
        "pkg/d.py": "from . import e\n",
        "pkg/e.py": "from .d import x\n",
    })
    found = circles(import_graph(root, "pkg"))
    # pkg -> pkg.a -> pkg.b -> pkg (from pkg import c names the package)
    assert {"pkg", "pkg.a", "pkg.b"} in found and {"pkg.d", "pkg.e"} in found
    assert len(found) == 2


def test_private_reach_ins_are_found(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": ("from pkg.b import _helper, public\n"
                     "class A:\n"
                     "    def f(self, rx):\n"
                     "        self._mine = rx._theirs\n"
                     "        return self.other._x, cls.__name__, rx.__dict__\n"),
    })
    assert sorted(private_reach_ins(root, "pkg")) == [
        "pkg/a.py: from pkg.b import _helper", "pkg/a.py: rx._theirs",
        "pkg/a.py: self.other._x"]
