"""guardline-hil: run the HIL scenario suite against a simulated or a real panel.

    guardline-hil list [--json]
    guardline-hil run [--target sim|serial:URL] [--report DIR] [--seed N]
                      [--fixture URL] [--wiring FILE] [--config FILE]
                      [scenario ...] [-- pytest options]
    guardline-hil report DIR        re-render a report directory's HTML

A scenario is named by its test function (``test_zone_trip_to_stored_alarm``
or without the ``test_`` prefix), by its module (``alarms``,
``test_delivery``) or by a pytest node id.  ``run`` is pytest on
hil/scenarios with the HIL plugin loaded; with ``--report DIR`` it writes
DIR/junit.xml (pytest's JUnit XML, with each scenario's latencies and seed
as properties), DIR/index.html and a timeline page per scenario.
Exit status is pytest's: 0 all passed, 1 some failed, 2 interrupted, 4
usage error (a target, fixture, config or scenario that does not exist is
refused before anything runs), 5 no scenario ran (none collected, or every
one skipped: the reasons are in the summary).  docs/qa.md is the guide.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "scenarios")
ROOT = os.path.dirname(HERE)
EXIT_USAGE = 4  # pytest.ExitCode.USAGE_ERROR (pytest is imported only to run)


class UsageError(Exception):
    """A bad command line (exit 4, pytest's usage error)."""


def scenarios() -> list[dict]:
    """The scenario functions, read from the sources (nothing imported)."""
    out = []
    for name in sorted(os.listdir(SCENARIOS)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        path = os.path.join(SCENARIOS, name)
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.name.startswith("test_"):
                doc = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
                params = []
                for d in node.decorator_list:
                    if isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "parametrize":
                        for kw in d.keywords:
                            if kw.arg == "ids" and isinstance(kw.value, (ast.List, ast.Tuple)):
                                params = [ast.literal_eval(e) for e in kw.value.elts]
                out.append({"module": name[:-3], "name": node.name,
                            "nodeid": "hil/scenarios/%s::%s" % (name, node.name),
                            "path": path, "doc": doc, "params": params})
    return out


def resolve(names: list[str]) -> list[str]:
    """Scenario names -> pytest arguments (paths and node ids)."""
    if not names:
        return [SCENARIOS]
    known = scenarios()
    out = []
    for n in names:
        by_func = [s for s in known if s["name"] in (n, "test_" + n)]
        by_mod = [s for s in known if s["module"] in (n, "test_" + n)]
        if by_func:
            out += ["%s::%s" % (s["path"], s["name"]) for s in by_func]
        elif by_mod:
            out.append(by_mod[0]["path"])
        elif "::" in n or n.endswith(".py") or os.path.exists(n):
            path, _, rest = n.partition("::")
            if not os.path.exists(path) and os.path.exists(os.path.join(ROOT, path)):
                path = os.path.join(ROOT, path)
            out.append(path + ("::" + rest if rest else ""))
        else:
            raise UsageError("no scenario %r (see guardline-hil list)" % n)
    return out


def plugin_args() -> list[str]:
    """``-p hil.plugin`` unless an installed pytest11 entry point already
    loads it under another name (pytest refuses a module registered twice
    under two names)."""
    from importlib.metadata import entry_points  # noqa: PLC0415
    for ep in entry_points(group="pytest11"):
        if ep.value == "hil.plugin" and ep.name != "hil.plugin":
            return []
    return ["-p", "hil.plugin"]


def pytest_args(a) -> list[str]:
    args = resolve(a.scenario)
    args += plugin_args() + ["-p", "no:cacheprovider", "--rootdir", ROOT,
             "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
             "--hil-target", a.target]
    if a.report:
        os.makedirs(a.report, exist_ok=True)
        args += ["--hil-report", a.report, "--junitxml", os.path.join(a.report, "junit.xml"),
                 "-o", "junit_suite_name=guardline-hil", "-o", "junit_family=xunit2"]
    if a.seed is not None:
        args += ["--hil-seed", str(a.seed)]
    if a.fixture:
        args += ["--hil-fixture", a.fixture]
    if a.wiring:
        args += ["--hil-wiring", a.wiring]
    if a.config:
        args += ["--hil-config", a.config]
    if a.listen:
        args += ["--hil-listen", a.listen]
    if a.primary_port:
        args += ["--hil-primary-port", str(a.primary_port)]
    if a.backup_port:
        args += ["--hil-backup-port", str(a.backup_port)]
    return args + list(a.pytest_args or [])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="guardline-hil",
                                 description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="docs/qa.md: how QA runs the suite on the sim and on "
                                        "a bench")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="list the scenarios")
    ls.add_argument("--json", action="store_true")
    run = sub.add_parser("run", help="run scenarios (pytest)")
    run.add_argument("scenario", nargs="*", help="scenario, module or node id (default: all)")
    run.add_argument("--target", default="sim",
                     help="sim (default) or serial:URL, e.g. serial:///dev/ttyUSB0, "
                          "serial:socket://10.0.0.7:4001, serial:rfc2217://lab:7000")
    run.add_argument("--report", metavar="DIR", help="write junit.xml and HTML timelines here")
    run.add_argument("--seed", type=int, help="link fault seed, one for the whole run "
                     "(default: drawn and reported; reproduce a run with it)")
    run.add_argument("--fixture", metavar="URL", help="bench: relay/GPIO fixture port")
    run.add_argument("--wiring", metavar="FILE", help="bench: fixture wiring JSON")
    run.add_argument("--config", metavar="FILE", help="panel config (default: HIL bank)")
    run.add_argument("--listen", metavar="ADDR", help="bench: address the links listen on")
    run.add_argument("--primary-port", type=int, help="bench: fixed primary (TCP) link port")
    run.add_argument("--backup-port", type=int, help="bench: fixed backup (UDP) link port")
    rep = sub.add_parser("report", help="re-render a report directory's HTML from its JSON")
    rep.add_argument("dir")
    return ap


def check_run_args(a) -> None:
    """What would make every scenario skip or error, refused before pytest
    starts (the plugin checks the same for a plain pytest run)."""
    from hil.urls import TargetURLError, check_run  # noqa: PLC0415

    try:
        check_run(a.target, a.fixture, (("--config", a.config), ("--wiring", a.wiring)))
    except TargetURLError as e:
        raise UsageError(str(e)) from None
    if a.fixture is None and a.wiring:
        raise UsageError("--wiring names the fixture's channels: give --fixture URL too")
    if a.target == "sim" and (a.fixture or a.listen or a.primary_port or a.backup_port):
        raise UsageError("--fixture, --listen and the fixed ports are for a bench "
                         "(--target serial:URL)")
    if a.report and os.path.exists(a.report) and not os.path.isdir(a.report):
        raise UsageError("--report %s: exists and is not a directory" % a.report)


def _list(items: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps(items, indent=1))
        return
    for s in items:
        variants = " [%s]" % ", ".join(s["params"]) if s["params"] else ""
        print("%-14s %s%s" % (s["module"][5:], s["name"], variants))
        if s["doc"]:
            for line in textwrap.wrap(s["doc"], 80):
                print("%14s   %s" % ("", line))
    sys.stdout.flush()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    a = build_parser().parse_args(argv)
    if a.cmd == "list":
        try:
            _list(scenarios(), a.json)
        except BrokenPipeError:  # `| head`: the reader has had enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if a.cmd == "report":
        from hil import report  # noqa: PLC0415
        try:
            print(report.rebuild(a.dir))
        except report.ReportError as e:
            print("guardline-hil report: %s" % e, file=sys.stderr)
            return 1
        return 0
    a.pytest_args = extra
    try:
        check_run_args(a)
        args = pytest_args(a)
    except UsageError as e:
        print("guardline-hil run: %s" % e, file=sys.stderr)
        return int(EXIT_USAGE)
    import pytest  # noqa: PLC0415
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main())
