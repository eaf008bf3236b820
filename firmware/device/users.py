# User codes: stored hashed, checked in constant time, with a wrong-code
# lockout.
#
# A code is never stored in clear: config holds sha256(salt || code) with a
# per-panel salt (config "code_salt"), so a leaked config does not give the
# codes of every panel at once (a 4-6 digit code is still brute-forceable
# from its hash: the salt only stops precomputed tables; the config file
# must stay protected).  `guardline-panel hash-code` computes the hashes.
#
# Lockout: after `attempts` wrong codes in a row the keypad refuses every
# code, good or bad, for `lockout_ms` (EN 50131-1 8.3.2: at most 10 wrong
# codes before a lockout of at least 90 s).

from hashlib import sha256
from binascii import unhexlify
from fwutil import const, ticks_diff

USER = const(1)  # arm, disarm, unlock
MANAGER = const(2)  # + bypass
MASTER = const(3)  # + everything
AUTHORITY = {"user": USER, "manager": MANAGER, "master": MASTER}

OK = const(0)
WRONG = const(1)
LOCKED = const(2)  # lockout running: code not even checked
LOCKOUT_STARTED = const(3)  # this wrong code started a lockout


def hash_code(salt, code):
    """sha256(salt || code) as bytes.  `salt` is bytes, `code` a str."""
    h = sha256(salt)
    h.update(code.encode())
    return h.digest()


def _equal(a, b):
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


class User:
    def __init__(self, uid, digest, authority, duress, pmask):
        self.id = uid
        self.digest = digest
        self.authority = authority
        self.duress = duress
        self.pmask = pmask  # bit (p - 1) set: may operate partition p

    def may(self, partition):
        return bool(self.pmask & (1 << (partition - 1)))


class Users:
    def __init__(self, salt_hex, users, attempts, lockout_ms):
        self.salt = unhexlify(salt_hex) if salt_hex else b""
        self.users = []
        for u in users:
            m = 0
            for p in u["partitions"]:
                m |= 1 << (p - 1)
            self.users.append(User(u["id"], unhexlify(u["code_hash"]),
                                   AUTHORITY[u["authority"]], u["duress"], m))
        self.attempts = attempts
        self.lockout_ms = lockout_ms
        self.wrong = 0
        self.locked_at = None

    def locked(self, now_ms):
        if self.locked_at is None:
            return False
        if ticks_diff(now_ms, self.locked_at) >= self.lockout_ms:
            self.locked_at = None
            self.wrong = 0
            return False
        return True

    def check(self, code, now_ms):
        """(result, user or None)."""
        if self.locked(now_ms):
            return LOCKED, None
        d = hash_code(self.salt, code)
        found = None
        for u in self.users:  # no early exit: the time does not tell which
            if _equal(d, u.digest):
                found = u
        if found is not None:
            self.wrong = 0
            return OK, found
        self.wrong += 1
        if self.wrong >= self.attempts:
            self.locked_at = now_ms
            return LOCKOUT_STARTED, None
        return WRONG, None
