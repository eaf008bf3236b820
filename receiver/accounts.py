"""The accounts a running receiver serves, and the native keyring they make:
the account table as the store holds it, the session core that judges
native frames with their keys, and the replay state it advances.

    accounts = Accounts(store)
    await accounts.reload()          # at start, and when the table changed
    accounts.core                    # protocol.session.ReceiverCore
    accounts.get("1234")             # the Account, or None
    accounts.mark_dirty(1234)        # replay state advanced (heartbeat, NAK)
    await accounts.flush_replay_state()

Invariants:

- The core finds a native account's key, highest sequence and our last
  sequence here (:meth:`keyring`); an account whose key or protocol
  changed is forgotten by the core at once, so its old key stops working
  with the next frame.
- Replay state advanced by frames that store nothing (heartbeats, NAKs) is
  written back by :meth:`flush_replay_state` (the receiver's housekeeping,
  every ``REPLAY_FLUSH_S``, before each reload and at stop); events carry
  theirs in their own commit.  A flush that fails keeps the accounts dirty.
- Another process (the CLI) may change the table while the receiver runs:
  :meth:`reload` compares the store's revision and reads the table only
  when it moved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from protocol.session import ReceiverCore
from receiver.records import Account

_LOGGER = logging.getLogger(__name__)

# Keyless DC-09 accounts named one per line at start; more are summed up.
KEYLESS_WARN_LINES = 100


def keyless_warning(number: str) -> str:
    """What an administrator must know about a DC-09 account without a key
    (the CLI prints it at ``accounts add``, the receiver logs it at start)."""
    return ("DC-09 account %s has no key: its messages travel unauthenticated, so anyone "
            "who can reach the receiver can send link tests and events in its name and "
            "they are ACKed and stored; give it an AES key unless the panel cannot "
            "encrypt (docs/dc09.md, \"Keyless accounts\")" % number)


@dataclass
class AccountChanges:
    """What a reload found: ``first`` (the receiver is starting), the
    accounts now, and the numbers of those removed."""

    first: bool
    accounts: list[Account]
    removed: list[str] = field(default_factory=list)


class Accounts:
    def __init__(self, store):
        self.store = store
        self.core = ReceiverCore(self.keyring)
        self._by_number: dict[str, Account] = {}
        self._revision = None
        self._dirty: set[int] = set()

    def __len__(self) -> int:
        return len(self._by_number)

    def __iter__(self):
        return iter(list(self._by_number.values()))

    def get(self, number: str) -> Account | None:
        return self._by_number.get(number)

    def keyring(self, account: int):
        """(key, highest sequence, our sequence) of a native account, for the
        session core; None for an account it must not accept."""
        a = self._by_number.get(str(account))
        if a is None or a.protocol != "native":
            return None
        return a.key, a.highest_seq, a.tx_seq

    async def reload(self) -> AccountChanges | None:
        """Re-read the accounts if the store's revision moved (None: it did
        not).  The core forgets an account removed or re-keyed."""
        rev = await self.store.accounts_revision()
        if rev == self._revision:
            return None
        await self.flush_replay_state()
        fresh = {a.number: a for a in await self.store.list_accounts()}
        changes = AccountChanges(self._revision is None, list(fresh.values()))
        for number, old in self._by_number.items():
            new = fresh.get(number)
            if new is None or new.key != old.key or new.protocol != old.protocol:
                if old.protocol == "native":
                    self.core.forget(int(number))
                if new is None:
                    changes.removed.append(number)
                    _LOGGER.info("account removed account=%s", number)
                else:
                    _LOGGER.info("account key or protocol changed account=%s", number)
        if not changes.first:
            for number, a in fresh.items():
                if number not in self._by_number:
                    _LOGGER.info("account added account=%s protocol=%s", number, a.protocol)
        self._by_number = fresh
        self._revision = rev
        return changes

    def warn_keyless(self) -> None:
        """Name the DC-09 accounts without a key (at start)."""
        keyless = sorted(n for n, a in self._by_number.items()
                         if a.protocol == "dc09" and not a.key)
        for n in keyless[:KEYLESS_WARN_LINES]:
            _LOGGER.warning(keyless_warning(n))
        if len(keyless) > KEYLESS_WARN_LINES:
            _LOGGER.warning("%d more DC-09 accounts have no key (accounts list shows them)",
                            len(keyless) - KEYLESS_WARN_LINES)

    # -- replay state ------------------------------------------------------------------

    def mark_dirty(self, account: int) -> None:
        """The core advanced ``account``'s replay state; write it back later."""
        self._dirty.add(account)

    async def flush_replay_state(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        rows = []
        for n in dirty:
            a = self._by_number.get(str(n))
            st = self.core.state(n)
            if a is None or st is None:
                continue
            a.highest_seq = max(a.highest_seq, st.highest_seq)
            a.tx_seq = max(a.tx_seq, st.tx_seq)
            rows.append((a.number, st.highest_seq, st.tx_seq))
        try:
            await self.store.save_replay_state(rows)
        except Exception:
            self._dirty |= dirty
            raise
