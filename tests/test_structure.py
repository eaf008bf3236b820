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
import functools
import os
import re

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


@functools.lru_cache(maxsize=None)
def _parse(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def import_graph(root: str = ROOT,
                 package: str | tuple[str, ...] = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (statically, anywhere in
    it); with several packages, the modules of all of them."""
    mods: dict[str, str] = {}
    for p in (package,) if isinstance(package, str) else package:
        mods.update(_modules(root, p))
    graph = {}
    for name, path in mods.items():
        tree = _parse(path)
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


# Standard-library functions whose documented public name starts with an
# underscore: os._exit is how a forked child ends (receiver.workers).
STDLIB_UNDERSCORED = frozenset(["os._exit"])


def private_reach_ins(root: str = ROOT, package: str = PACKAGE) -> list[str]:
    """"path: expression" for each ``x._name`` whose ``x`` is not ``self``
    or ``cls``, and each ``from m import _name`` (dunders are not private)."""
    found = []
    for path in sorted(_modules(root, package).values()):
        rel = os.path.relpath(path, root)
        tree = _parse(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                v = node.value
                if not (isinstance(v, ast.Name) and v.id in ("self", "cls")) \
                        and ast.unparse(node) not in STDLIB_UNDERSCORED:
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
    # (the workflow's CLI ingests a duress passcode's hold-up through the
    # receiver's ingest path, not started: receiver.workflow_cli)
    assert importers == ["receiver.cli", "receiver.demo", "receiver.testing",
                         "receiver.workflow_cli"], importers


# Everything the repository runs on a host (device code is flat modules,
# imported by name on a board: not a package here) and its tests.
HOST_PACKAGES = ("receiver", "protocol", "firmware", "hil", "bench", "testkit", "tests")

# SQL that names the events table.  Only the store reads or writes it: the
# walk test, HIL, the benchmarks and the console read events through the
# store's feed (Store.events_after, ``guardline-receiver events --after``).
EVENTS_SQL = re.compile(r"\b(FROM|JOIN|INTO|UPDATE|TABLE)\s+events\b")
# receiver/rules_store.py and receiver/workflow_db.py: the store's own rules and
# workflow operations (issues 18, 17), SQL
# both backends drive inside their transactions (receiver.store), nobody else.
STORE_MODULES = ("receiver/schema.py", "receiver/sqlite_store.py", "receiver/pg_store.py",
                 "receiver/rules_store.py", "receiver/workflow_db.py")


def events_table_sql(root: str = ROOT, packages=HOST_PACKAGES[:-1]) -> list[str]:
    """"path: line" for each string in the code that is SQL on the events
    table, outside the store's modules."""
    found = []
    for p in packages:
        for path in sorted(_modules(root, p).values()):
            rel = os.path.relpath(path, root)
            if rel in STORE_MODULES:
                continue
            tree = _parse(path)
            found += ["%s:%d" % (rel, node.lineno) for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str)
                      and EVENTS_SQL.search(node.value)]
    return found


# The test kit's parts (testkit/__init__.py): each defined once, in the kit.
# SimPanel was two unrelated classes before the kit; the name stays retired.
KIT = {"free_port": "testkit/net.py", "wait_until": "testkit/wait.py",
       "wait_until_sync": "testkit/wait.py", "SimControl": "testkit/control.py",
       "ControlChannel": "testkit/control.py", "ControlCodec": "testkit/control.py",
       "PanelProcess": "testkit/panel.py", "InProcessPanel": "testkit/inproc.py",
       "SessionPanel": "testkit/session_panel.py", "ReceiverProcess": "testkit/receiver.py",
       "TinyReceiver": "testkit/tiny_receiver.py", "JsonLinesSink": "testkit/dispatch.py",
       "scenario_config": "testkit/configs.py", "SimPanel": None}


def kit_copies(root: str = ROOT, packages=HOST_PACKAGES) -> list[str]:
    """"path: name" for each function or class named as a kit part (or that
    name with a leading underscore) defined outside the part's home."""
    found = []
    for p in packages:
        for path in sorted(_modules(root, p).values()):
            rel = os.path.relpath(path, root)
            tree = _parse(path)
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = node.name.lstrip("_")
                    if name in KIT and KIT[name] != rel:
                        found.append("%s: %s" % (rel, node.name))
    return found


def test_only_the_store_touches_the_events_table():
    found = events_table_sql()
    assert found == [], "SQL on the events table outside the store: %s (read the " \
        "store's event feed, Store.events_after)" % found


def test_the_kit_has_one_home_for_each_part():
    found = kit_copies()
    assert found == [], "copies of the test kit's parts: %s (import them from testkit)" % found


def test_the_demo_runs_on_product_code_and_the_kit():
    """The demo is a product entry point: it may use the kit, never test
    code (tests/, *.testing helpers)."""
    graph = import_graph(ROOT, HOST_PACKAGES)
    seen, todo = set(), ["receiver.demo"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    test_code = sorted(m for m in seen
                       if m.split(".")[0] == "tests" or m.rpartition(".")[2] == "testing")
    assert test_code == [], "receiver.demo reaches test code: %s" % test_code
    assert "testkit" in seen  # the closure was followed across packages


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


def test_events_sql_and_kit_copies_are_found(tmp_path):
    root = _tree(tmp_path, {
        "receiver/__init__.py": "",
        "receiver/sqlite_store.py": "Q = 'SELECT * FROM events'\n",
        "hil/__init__.py": "",
        "hil/rx.py": ('"""Reads the events from events of a receiver."""\n'
                      "def f(c):\n"
                      "    return c.execute(\"SELECT id FROM events WHERE account = ?\")\n"
                      "def _free_port():\n    pass\n"
                      "class SimPanel:\n    pass\n"),
        "testkit/__init__.py": "",
        "testkit/net.py": "def free_port():\n    pass\n",
    })
    assert events_table_sql(root, ("receiver", "hil")) == ["hil/rx.py:3"]
    assert kit_copies(root, ("hil", "testkit")) == ["hil/rx.py: _free_port",
                                                    "hil/rx.py: SimPanel"]
