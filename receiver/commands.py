"""Remote commands: a supervisor arms, disarms or asks a native panel for
its status over the TCP connection the panel keeps open to this receiver
(``guardline-receiver command`` and the console's panel page).

    reply = await commands.send("1234", "arm-away", partition=1, by="sam")

Invariants:

- Our command sequence is stored before the frame leaves: the panel
  refuses any command sequence it has seen, so a sequence reused after a
  restart would be refused (docs/protocol.md, remote commands).
- One command at a time per panel (the firmware holds one pending REPLY);
  a REPLY is matched to its command by (account, command sequence); a
  REPLY nobody waits for (a retransmission after we gave up, or a REPLY to
  another receiver) is logged and dropped.
- Every failure is a :class:`CommandError` carrying the HTTP status the
  console answers with and a sentence for the person who asked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from protocol.lean import glwire as w
from protocol.session import Accepted
from receiver.accounts import Accounts
from receiver.connections import ConnectionRegistry
from receiver.logfmt import q

_LOGGER = logging.getLogger(__name__)

# Seconds a command waits for the panel's REPLY.  A panel polls its link
# every scan (tens of ms) and sends a pending event before the REPLY, each
# lockstep round trip well under a second; 15 s covers a slow cellular link
# and a retry or two without leaving an operator waiting indefinitely.
COMMAND_TIMEOUT_S = 15.0

# Receiver COMMAND names (CLI and console) -> glwire codes.
COMMANDS = {"status": w.CMD_STATUS, "arm-away": w.CMD_ARM_AWAY, "arm-stay": w.CMD_ARM_STAY,
            "disarm": w.CMD_DISARM, "bypass": w.CMD_BYPASS, "unbypass": w.CMD_UNBYPASS}
RESULT_NAMES = {w.R_OK: "ok", w.R_REFUSED: "refused", w.R_UNSUPPORTED: "unsupported",
                w.R_BAD_ARGUMENT: "bad_argument"}
PARTITION_STATE_NAMES = {w.P_DISARMED: "disarmed", w.P_EXIT_DELAY: "exit_delay",
                         w.P_ARMED_AWAY: "armed_away", w.P_ARMED_STAY: "armed_stay",
                         w.P_ENTRY_DELAY: "entry_delay", w.P_ALARM: "alarm"}


class CommandError(Exception):
    """A remote command could not be sent or was not answered; ``status``
    is the HTTP status the console answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Command:
    """One command as asked: which panel, what, and who asked."""

    account: str
    command: str
    partition: int = 1
    arg: int = 0
    by: str = "?"


def reply_dict(c: Command, seq: int, m: dict) -> dict:
    """The panel's REPLY as the CLI and the console show it (names beside
    the codes)."""
    return {"account": c.account, "command": c.command, "partition": c.partition,
            "seq": seq, "result": m["result"],
            "result_name": RESULT_NAMES.get(m["result"], str(m["result"])),
            "partitions": [{"position": i + 1, "state": s,
                            "state_name": PARTITION_STATE_NAMES.get(s, str(s))}
                           for i, s in enumerate(m["partitions"])],
            "troubles": m["troubles"]}


class RemoteCommands:
    def __init__(self, accounts: Accounts, store, connections: ConnectionRegistry):
        self.accounts = accounts
        self.store = store
        self.connections = connections
        # (account, our command sequence) -> future for the panel's REPLY
        self._replies: dict[tuple[int, int], asyncio.Future] = {}
        # one command in flight per panel: the firmware holds one pending REPLY
        self._locks: dict[int, asyncio.Lock] = {}

    def _check(self, c: Command) -> int:
        """The panel's number, or CommandError for a command not to send."""
        a = self.accounts.get(str(c.account))
        if a is None:
            raise CommandError(404, "no account %s" % c.account)
        if a.protocol != "native":
            raise CommandError(409, "account %s is not a native-protocol panel" % c.account)
        if c.command not in COMMANDS:
            raise CommandError(400, "command must be one of %s" % ", ".join(COMMANDS))
        if not 0 <= c.partition <= 255 or not 0 <= c.arg <= 0xFFFF:
            raise CommandError(400, "partition must be 0..255 and arg 0..65535")
        return int(a.number)

    async def send(self, account: str, command: str, partition: int = 1, arg: int = 0,
                   by: str = "?", timeout: float = COMMAND_TIMEOUT_S) -> dict:
        """Send a COMMAND to a panel over its open TCP connection and wait
        for its REPLY (:func:`reply_dict`).  Raises CommandError."""
        c = Command(str(account), command, partition, arg, by)
        n = self._check(c)
        async with self._locks.setdefault(n, asyncio.Lock()):
            seq, m = await self._round_trip(c, n, timeout)
        result = reply_dict(c, seq, m)
        _LOGGER.info("remote command reply account=%s command=%s seq=%d result=%s by=%s",
                     c.account, command, seq, result["result_name"], q(by))
        return result

    async def _round_trip(self, c: Command, n: int, timeout: float) -> tuple[int, dict]:
        link = self.connections.stream_for(str(n))
        if link is None:
            raise CommandError(409, "panel %s has no open TCP connection to this "
                                    "receiver; commands need one" % c.account)
        seq, frame = await self._sealed(c, n)
        _LOGGER.warning("remote command account=%s command=%s partition=%d arg=%d by=%s "
                        "seq=%d peer=%s", c.account, c.command, c.partition, c.arg, q(c.by),
                        seq, link.peer)
        fut = asyncio.get_running_loop().create_future()
        self._replies[(n, seq)] = fut
        try:
            link.send(frame)
            return seq, await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            _LOGGER.warning("remote command unanswered account=%s command=%s seq=%d by=%s",
                            c.account, c.command, seq, q(c.by))
            raise CommandError(504, "panel %s did not answer within %.0f s"
                               % (c.account, timeout)) from None
        finally:
            self._replies.pop((n, seq), None)

    async def _sealed(self, c: Command, n: int) -> tuple[int, bytes]:
        """(our sequence, the COMMAND frame), the sequence stored first."""
        core = self.accounts.core
        st = core.state(n)
        a = self.accounts.get(c.account)
        if st is None or a is None:  # the account lost its key or protocol meanwhile
            raise CommandError(409, "account %s has no native key" % c.account)
        seq, frame = core.command(n, COMMANDS[c.command], c.partition, time.time(), c.arg)
        try:
            await self.store.save_replay_state([(a.number, st.highest_seq, st.tx_seq)])
        except Exception as e:  # noqa: BLE001 - not persisted: do not send
            self.accounts.mark_dirty(n)
            raise CommandError(503, "command not sent: sequence not stored (%s)" % e) from None
        a.tx_seq = max(a.tx_seq, st.tx_seq)
        return seq, frame

    def reply_received(self, acc: Accepted) -> None:
        """A panel's REPLY (accepted by the core): to the command waiting
        for it."""
        m = acc.msg
        fut = self._replies.get((acc.account, m["command_seq"]))
        if fut is None:
            # a retransmission after we gave up, or a REPLY to another receiver
            _LOGGER.info("panel reply with no waiting command account=%d command_seq=%d "
                         "result=%s", acc.account, m["command_seq"],
                         RESULT_NAMES.get(m["result"], m["result"]))
            return
        if not fut.done():
            fut.set_result(m)
