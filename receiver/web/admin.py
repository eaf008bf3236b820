"""``guardline-receiver users ...``: console users from the command line.

    guardline-receiver [--config F] [--db PATH] users add NAME --role ROLE [--password-stdin]
    guardline-receiver [--config F] [--db PATH] users list [--json]
    guardline-receiver [--config F] [--db PATH] users passwd NAME [--password-stdin]

``--db`` (or the configuration's store) may be an SQLite file or a
``postgresql://`` URL; the users go where that receiver's console looks
for them (receiver.web.user_stores.user_store_for).

The password is read twice from the terminal (not echoed), or once from
standard input with ``--password-stdin`` (for provisioning scripts); it is
never taken from the command line, where ``ps`` and shell history would
show it.  A running console notices a changed password or role within
``receiver.web.SWEEP_S`` (that user's sessions end); on PostgreSQL the
sessions end at once, on every receiver (receiver.web.pg_users).

Wiring (receiver/cli.py, in ``build_parser``)::

    from receiver.web import admin as web_admin
    web_admin.register(sub, common, _load_config)

The functions :func:`add_user`, :func:`list_users` and :func:`set_password`
do the work and can be called directly (tests, provisioning).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import getpass
import json
import sys

from receiver.store import StoreMissing, is_url, mask_url
from receiver.store_factory import make_store
from receiver.web.user_stores import user_store_for
from receiver.web.users import ROLES, User, UserError, check_password


def _with_store(db: str, job, create: bool = False):
    """Open the user store of ``db``, ``await job(store)``, close it.  The
    receiver's store must be there (StoreMissing) unless ``create``: then
    it is made as the receiver makes it (mode 0600, receiver.store)."""
    async def run():
        rx_store = make_store(db, create=create)
        await rx_store.open()
        await rx_store.close()
        s = user_store_for(db)
        await s.open()
        try:
            return await job(s)
        finally:
            await s.close()
    return asyncio.run(run())


def add_user(db: str, name: str, role: str, password: str) -> User:
    """Create a console user (raises UserError)."""
    async def job(s):
        u = await s.add(name, role, password)
        await s.record("cli", "user.add", "name=%s role=%s" % (name, role))
        return u
    return _with_store(db, job, create=True)


def list_users(db: str) -> list[User]:
    return _with_store(db, lambda s: s.list_users())


def set_password(db: str, name: str, password: str) -> None:
    """Change a user's password (raises UserError)."""
    async def job(s):
        await s.set_password(name, password, actor="cli")  # audited in the same transaction
    _with_store(db, job)


def read_password(from_stdin: bool, stdin=None) -> str:
    """One line from stdin, or asked twice on the terminal."""
    if from_stdin:
        line = (stdin or sys.stdin).readline()
        return line.rstrip("\r\n")
    first = getpass.getpass("New password (at least 10 characters): ")
    check_password(first)
    if getpass.getpass("Same password again: ") != first:
        raise UserError("the two passwords differ")
    return first


def cmd_users(args, cfg, out=None, err=None) -> int:
    """Run one ``users`` action; returns the exit status (0 ok, 1 failed,
    2 bad input)."""
    out = out or sys.stdout
    err = err or sys.stderr
    db = cfg.db
    try:
        if args.action == "add":
            pw = read_password(args.password_stdin)
            check_password(pw)  # before a new store is made for it
            u = add_user(db, args.name, args.role, pw)
            print("user %s added (role %s)" % (u.name, u.role), file=out)
        elif args.action == "passwd":
            _with_store(db, lambda s: s.count())  # no store: say so before asking
            pw = read_password(args.password_stdin)
            set_password(db, args.name, pw)
            print("password of %s changed; their console sessions end %s" % (
                args.name, "now" if is_url(db) else "within a minute"), file=out)
        elif args.action == "list":
            users = list_users(db)
            if getattr(args, "json", False):
                for u in users:
                    print(json.dumps(u.to_dict(), sort_keys=True), file=out)
            else:
                if not users:
                    print("no console users (add one: users add NAME --role administrator)",
                          file=out)
                for u in users:
                    print("%-24s %-14s %-9s last login %s" % (
                        u.name, u.role, "disabled" if u.disabled else "active",
                        _iso(u.last_login_at)), file=out)
        else:
            print("guardline-receiver: unknown users action %r" % args.action, file=err)
            return 2
    except UserError as e:
        print("guardline-receiver: %s" % e, file=err)
        return 1 if str(e).startswith("no user") else 2
    except (EOFError, KeyboardInterrupt):
        print("guardline-receiver: no password given", file=err)
        return 2
    except StoreMissing:
        raise  # the CLI says where it looked
    except Exception as e:  # noqa: BLE001 - e.g. the database cannot be opened
        print("guardline-receiver: cannot change console users in %s: %s" % (
            mask_url(db) if is_url(db) else db, e), file=err)
        return 1
    return 0


def _iso(t) -> str:
    if t is None:
        return "never"
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def register(sub, common: argparse.ArgumentParser, load_config) -> argparse.ArgumentParser:
    """Add ``users`` to the CLI's subparsers.  ``common`` is the parent
    parser carrying --config/--db; ``load_config(args)`` returns the
    receiver Config (for its ``db``)."""
    u = sub.add_parser("users", parents=[common], help="operator console users")
    usub = u.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = usub.add_parser("add", parents=[common], help="add a console user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (one line)")
    lst = usub.add_parser("list", parents=[common], help="list console users")
    lst.add_argument("--json", action="store_true")
    pw = usub.add_parser("passwd", parents=[common], help="set a console user's password")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the password from standard input (one line)")
    u.set_defaults(func=lambda args: cmd_users(args, load_config(args)))
    return u
