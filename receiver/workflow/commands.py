"""Panel commands from the site view, in words: the confirmation a
supervisor reads before a command goes out, and the panel's REPLY as
sentences (partition names, trouble names: never positions or bitmasks).

The command itself is ``Receiver.send_command`` (POST
/api/accounts/{account}/command, docs/console.md "Remote commands"); who
may send one is the console's permission table (``panel.command``:
supervisors and administrators).  This module only words it.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.lean import glwire as w

# The commands the console offers (bypass exists in the protocol but is
# not offered: docs/console.md).
CONSOLE_COMMANDS = ("status", "arm-away", "arm-stay", "disarm")

# Partition states (glwire P_*; app.PARTITION_STATE_NAMES gives the same
# names) as an operator says them.
STATE_WORDS = {"disarmed": "disarmed", "exit_delay": "arming (exit delay running)",
               "armed_away": "armed away", "armed_stay": "armed stay",
               "entry_delay": "entry delay running", "alarm": "IN ALARM"}
# Trouble bits of HEARTBEAT and REPLY (docs/protocol.md; docs/firmware.md
# "Troubles"), in bit order.
TROUBLE_WORDS = ((w.T_AC_LOSS, "mains power lost"),
                 (w.T_LOW_BATTERY, "battery low"),
                 (w.T_BOX_TAMPER, "panel box open (tamper)"),
                 (w.T_PATH1_FAIL, "primary path (1) failed"),
                 (w.T_PATH2_FAIL, "backup path (2) failed"),
                 (w.T_CLOCK_UNSET, "clock not set"),
                 (w.T_CONFIG, "configuration fault (panel in safe mode)"),
                 (w.T_SIREN, "siren fault"))
RESULT_WORDS = {
    "ok": "The panel did it.",
    "refused": "The panel refused (a partition not ready to arm: a zone open or in "
               "trouble; or a time lock).",
    "unsupported": "The panel does not support this command.",
    "bad_argument": "The panel has no such partition.",
}


def partition_words(number: int, partitions: dict) -> str:
    """'partition 1 (vault)' with the account's name for it, else 'partition 1'."""
    name = (partitions or {}).get(str(number))
    return "partition %d (%s)" % (number, name) if name else "partition %d" % number


def confirmation(command: str, site_name: str, account: str, partition: int,
                 partitions: dict) -> str:
    """The question a supervisor answers before the command is sent."""
    if command not in CONSOLE_COMMANDS:
        raise ValueError("command must be one of %s" % ", ".join(CONSOLE_COMMANDS))
    site = "%s (account %s)" % (site_name, account) if site_name else "account %s" % account
    if command == "status":
        return "Ask the panel of %s for its status?" % site
    verb = {"arm-away": "Arm away", "arm-stay": "Arm stay", "disarm": "Disarm"}[command]
    return "%s %s of %s?" % (verb, partition_words(partition, partitions), site)


def trouble_words(bits: int) -> list[str]:
    out = [words for bit, words in TROUBLE_WORDS if bits & bit]
    known = 0
    for bit, _ in TROUBLE_WORDS:
        known |= bit
    unknown = bits & ~known
    n = 0
    while unknown:
        if unknown & 1:
            out.append("a trouble this receiver has no name for (number %d)" % n)
        unknown >>= 1
        n += 1
    return out


@dataclass(frozen=True)
class ReplyWords:
    result: str  # RESULT_WORDS
    partitions: tuple  # "Partition 1 (vault): armed away."
    troubles: str  # "Troubles: mains power lost and battery low." / "No troubles."

    def lines(self) -> list[str]:
        return [self.result, *self.partitions, self.troubles]


def position_ids(partitions: dict) -> list[int]:
    """The account's partition ids in ascending order.  A REPLY lists its
    partitions' states by position, in the panel's configuration order,
    without ids; Guardline configurations list partitions by ascending id
    (examples/bank.json, ``guardline-panel new``), so the n-th position is
    the n-th id.  (A protocol change carrying the ids would remove this
    assumption: docs/workflow-design.md, "Open questions".)"""
    return sorted(int(k) for k in (partitions or {}) if str(k).isdigit())


def reply_words(reply: dict, partitions: dict) -> ReplyWords:
    """A REPLY (``Receiver.send_command``'s answer) as sentences."""
    result = RESULT_WORDS.get(str(reply.get("result_name")),
                              "The panel answered with result %s." % reply.get("result"))
    ids = position_ids(partitions)
    parts = []
    for p in reply.get("partitions") or []:
        pos = p["position"]
        label = partition_words(ids[pos - 1] if 0 < pos <= len(ids) else pos, partitions)
        state = STATE_WORDS.get(p.get("state_name"), "in a state this receiver has no name "
                                "for (%s)" % p.get("state"))
        parts.append("%s: %s." % (label[:1].upper() + label[1:], state))
    t = trouble_words(int(reply.get("troubles") or 0))
    troubles = "Troubles: %s." % ", ".join(t) if t else "No troubles."
    return ReplyWords(result, tuple(parts), troubles)
