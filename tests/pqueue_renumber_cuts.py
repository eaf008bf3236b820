# Renumbering a full persistent queue (firmware/device/pqueue.py) with the
# power cut after every byte it writes.  Plain code that runs the same under
# CPython (tests/test_fw_pqueue.py imports it) and under the MicroPython VM
# (the same test runs it there as a driver: one JSON case per line in, one
# JSON report per line out).
#
# A case: {"dir": D, "slots": n, "first": s, "shift": k}: a full queue of
# n records (seq s.., alarms and restores, some with text) is renumbered as the
# reporter does after a receiver's jump (each record, oldest first, to
# seq + k; a negative k is the fall-back's renumbering down).  Checked:
#   - uncut, nothing is evicted (dropped 0), every record is there once,
#     in order, with its new number and its content, also after a reboot;
#   - cut after every byte written (then a clean boot): every record is
#     there once and whole, with its old number or its new one;
#   - cut after every byte of the renumbering of the first record, then
#     again after every byte the boot's journal replay writes: the same.
# The report lists violations in words and counts what the cuts left.

import json
import sys

import pqueue


class PowerLost(Exception):
    pass


class CuttingFile:
    """A queue file that loses power after `budget` more bytes written:
    the write in progress lands only up to that byte."""

    def __init__(self, f, budget):
        self.f = f
        self.budget = budget

    def write(self, b):
        if self.budget <= 0:
            raise PowerLost()
        if len(b) > self.budget:
            self.f.write(bytes(b[:self.budget]))
            self.budget = 0
            raise PowerLost()
        self.budget -= len(b)
        return self.f.write(b)

    def seek(self, pos):
        return self.f.seek(pos)

    def readinto(self, b):
        return self.f.readinto(b)

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()


def _fields(m):
    return [m["qualifier"], m["code"], m["partition"], m["zone"], m["event_time"], m["text"],
            m["position"]]


def _fill(path, n, first):
    _write(path, b"")
    q = pqueue.PersistentQueue(path, n)
    for k in range(n):
        # every third a vehicle unit's event with its position ('E' slot)
        pos = (52368000 + k, 4882000, 10 * k, 900, 1, 9, 9, 1700000000 + k, 1) \
            if k % 3 == 1 else None
        q.append(first + k, 1 if k % 3 else 3, 130 + k % 7, 1 + k % 2, k + 1, 1700000000 + k,
                 "zone %d" % (k + 1) if k % 2 else None, pos)
    q.close()


def _records(path, n):
    """[(seq, fields)] oldest first, and the slots found torn."""
    q = pqueue.PersistentQueue(path, n)
    out = [(s, _fields(q.read(q.find(s)))) for s in q.seqs()]
    torn = q.torn
    q.close()
    return out, torn


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _renumber_all(q, before, shift):
    for s, _ in before:
        q.renumber(s, s + shift)


def _open_cut(path, n, budget, files=None):
    def opener(p, mode):
        f = CuttingFile(open(p, mode), budget)
        if files is not None:
            files.append(f)
        return f
    return pqueue.PersistentQueue(path, n, opener=opener)


class Faults:
    """Violations in words: the first 20 kept, all counted."""

    def __init__(self):
        self.n = 0
        self.first = []

    def append(self, text):
        self.n += 1
        if len(self.first) < 20:
            self.first.append(text)


def _check(what, found, before, shift, bad):
    """Every record once and whole, with its old number or its new one."""
    olds = {}
    for s, f in before:
        olds[s] = f
    seen = []
    for s, f in found:
        old = s if s in olds else s - shift
        if old not in olds or olds[old] != f:
            bad.append("%s: record %d is none of the queue's (%r)" % (what, s, f))
        elif old in seen:
            bad.append("%s: record %d is there twice" % (what, old))
        else:
            seen.append(old)
    for s, _ in before:
        if s not in seen:
            bad.append("%s: record %d is lost" % (what, s))


def run(case):
    n = case["slots"]
    shift = case["shift"]
    path = case["dir"] + "/q"
    bad = Faults()
    _fill(path, n, case["first"])
    image = _read(path)
    before, _ = _records(path, n)
    want = [(s + shift, f) for s, f in before]
    # uncut
    q = pqueue.PersistentQueue(path, n)
    _renumber_all(q, before, shift)
    live = [(s, _fields(q.read(q.find(s)))) for s in q.seqs()]
    dropped = q.dropped
    q.close()
    after, torn = _records(path, n)
    if dropped or live != want or after != want or torn:
        bad.append("uncut: dropped %d, torn %d, live %r, after a reboot %r, wanted %r" % (
            dropped, torn, live, after, want))
    # find how many bytes a whole renumbering writes
    _write(path, image)
    files = []
    q = _open_cut(path, n, 1 << 30, files)
    _renumber_all(q, before, shift)
    total = (1 << 30) - files[-1].budget
    q.close()
    renumbered = {}  # how many records the cut left renumbered -> budgets
    for budget in range(total + 1):
        _write(path, image)
        q = _open_cut(path, n, budget)
        try:
            _renumber_all(q, before, shift)
        except PowerLost:
            pass
        found, _ = _records(path, n)
        _check("cut at byte %d" % budget, found, before, shift, bad)
        k = len([s for s, _ in found if s not in [b for b, _ in before]])
        renumbered[k] = renumbered.get(k, 0) + 1
    # cut in the first renumbering once its journal is committed (then
    # the slot: torn, written, committed), then again in the boot's replay
    one = total // n
    replays = 0
    for budget in (one // 2, one // 2 + pqueue.SLOT // 2, one - 2, one - 1):
        _write(path, image)
        q = _open_cut(path, n, budget)
        try:
            q.renumber(before[0][0], before[0][0] + shift)
        except PowerLost:
            pass
        cut = _read(path)
        for b2 in range(pqueue.SLOT + 3):
            _write(path, cut)
            try:
                _open_cut(path, n, b2).close()
            except PowerLost:
                replays += 1
            found, _ = _records(path, n)
            _check("cut at byte %d, then at byte %d of the boot" % (budget, b2),
                   found, before, shift, bad)
    keys = sorted(renumbered)
    return {"violations": bad.first, "n_violations": bad.n, "bytes": total,
            "renumbered_after_cuts": [[k, renumbered[k]] for k in keys],
            "replays_cut": replays}


if __name__ == "__main__":
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        print(json.dumps(run(json.loads(line))))
