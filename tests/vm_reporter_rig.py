# Runs under the MicroPython VM (tests/test_fw_reply_fuzz_vm.py): the real
# reporters (reporter.py, dc09rep.py) with the real queue, sequence store,
# clock and panel, over fake links the host fills and empties.  One JSON
# request per line on stdin, one JSON reply per line on stdout:
#   {"op": "init", "dir": D, "cfg": {...}}      a fresh panel in directory D
#   {"op": "emit", "event": [q, code, part, zone]}
#   {"op": "cut", "after": K}    the power goes after K more records renumbered
#   {"op": "run", "polls": N, "step": MS, "inbox": [[path, hex], ...]}
#       -> {"sent": [[path, hex], ...], "queue": n, "now": ms, "codes": [...]}
#          or {"cut": true}: the power went (an "init" of the same D powers on)
# An exception anywhere is answered {"error": "..."} with its traceback,
# so the host test fails with it rather than with a dead VM.

import sys
import json
import io
from binascii import hexlify, unhexlify

import config as C
import pqueue
import seqstore
import clock
import panel as P


class Link:
    def __init__(self, stream):
        self.stream = stream
        self.lost = False
        self.connected = True
        self.out = []
        self.inbox = []

    def poll(self, now_ms):
        pass

    def send(self, data):
        self.out.append(bytes(data))
        return True

    def recv(self):
        return self.inbox.pop(0) if self.inbox else None


S = {}


class PowerLost(Exception):
    pass


def cut(req):
    """The queue's next renumber() after `after` more loses the power."""
    q = S["queue"]
    real = q.renumber
    left = [req["after"]]

    def renumber(seq, new_seq):
        if not left[0]:
            raise PowerLost()
        left[0] -= 1
        return real(seq, new_seq)

    q.renumber = renumber
    return {}


def drain():
    p = S["panel"]
    for q, code, part, zone, text in p.out:
        S["queue"].append(S["seqs"].take(), q, code, part, zone, S["clock"].now(S["now"]), text)
    p.out.clear()


def init(req):
    cfg, errors = C.validate(req["cfg"])
    if errors:
        raise ValueError("config: %s" % errors)
    d = req["dir"]
    if "queue" in S:
        S["queue"].close()  # a power cycle: the files as the cut left them
    q = pqueue.PersistentQueue(d + "/q", 32)
    s = seqstore.SeqStore(d + "/s", q.max_seq() + 1)
    c = clock.Clock()
    p = P.Panel(cfg, 0)
    links = [Link(True), Link(False)]
    if cfg["protocol"] == "dc09":
        import dc09rep
        rep = dc09rep.Dc09Reporter(cfg, q, s, c, p, links, 0)
    else:
        import reporter
        rep = reporter.Reporter(cfg, q, s, c, p, links, 0)
    S.update({"queue": q, "seqs": s, "clock": c, "panel": p, "links": links, "rep": rep,
              "now": 0})
    return {}


def run(req):
    links = S["links"]
    for path, h in req.get("inbox", []):
        links[path - 1].inbox.append(unhexlify(h))
    for _ in range(req["polls"]):
        S["now"] += req["step"]
        try:
            S["rep"].poll(S["now"])
        except PowerLost:
            return {"cut": True}
        drain()
    sent = []
    for i in range(len(links)):
        for b in links[i].out:
            sent.append([i + 1, hexlify(b).decode()])
        links[i].out = []
    q = S["queue"]
    return {"sent": sent, "queue": len(q), "now": S["now"],
            "codes": [q.read(q.find(s))["code"] for s in q.seqs()],
            "settled": not len(q) and S["rep"].rule.ok == [True, True]}


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        req = json.loads(line)
        try:
            op = req["op"]
            if op == "init":
                rep = init(req)
            elif op == "cut":
                rep = cut(req)
            elif op == "emit":
                S["panel"].emit(*req["event"])
                drain()
                rep = {}
            else:
                rep = run(req)
        except Exception as e:  # noqa: BLE001 - reported to the host test
            buf = io.StringIO()
            sys.print_exception(e, buf)  # pyright: ignore[reportAttributeAccessIssue]
            rep = {"error": buf.getvalue()}
        print(json.dumps(rep))


main()
