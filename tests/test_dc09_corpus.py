"""Frames from real panels (tests/dc09_corpus/, one file per public
source): each decodes to the message and events its file lists, and each
clear one is ACKed by a running receiver, which stores exactly those
events.  Old timestamps go through the decoder (no time window); a clear
message's timestamp is not tested by the receiver (DC-09 5.5.1.8), so the
clear frames go through the live receiver as they are."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from protocol import dc09
from receiver import dc09_core
from receiver.config import Config
from receiver.store import Account
from receiver.testing import running_receiver

CORPUS = Path(__file__).parent / "dc09_corpus"


def load():
    out = []
    for path in sorted(CORPUS.glob("*.json")):
        doc = json.loads(path.read_text())
        assert doc["source"].startswith("https://github.com/"), path
        for i, f in enumerate(doc["frames"]):
            out.append(pytest.param(doc, f, id="%s[%d]" % (path.stem, i)))
    return out


FRAMES = load()


def raw(f) -> bytes:
    return f["frame"].encode("latin-1")


def key_of(f):
    return f["key"].encode("ascii") if f.get("key") else None


def message_fields(m: dc09.Dc09Message) -> dict:
    return {"id": m.msg_id, "seq": m.seq, "account": m.account, "receiver": m.receiver,
            "line": m.line, "encrypted": m.encrypted,
            "timestamp": m.timestamp.isoformat() if m.timestamp else None,
            "deviations": m.deviations}


def event_fields(c: dc09_core.EventContent, ext: dict) -> dict:
    e = dict(ext, **c.modifiers)
    return {"qualifier": c.qualifier, "code": c.code, "partition": c.partition,
            "zone": c.zone, "user": c.user, "sia_code": c.sia_code, "text": c.text,
            "ext": e or None}


def test_the_corpus_has_real_frames_from_several_sources():
    sources = {json.loads(p.read_text())["source"] for p in CORPUS.glob("*.json")}
    assert len(sources) >= 8 and len(FRAMES) >= 20


@pytest.mark.parametrize("doc,f", FRAMES)
def test_each_frame_decodes_to_its_listed_message_and_events(doc, f):
    compat = "crc_includes_cr" in f.get("compat", ())
    if f.get("header_only"):
        # encrypted, key not published: the clear header checks out, and
        # without the key the frame is refused as undecryptable, not garbled
        m = dc09.parse_header(raw(f), crc_includes_cr=compat)
        assert message_fields(m) == f["message"]
        with pytest.raises(dc09.Dc09KeyError):
            dc09.parse(raw(f), crc_includes_cr=compat)
        return
    m = dc09.parse(raw(f), key_lookup=lambda a: key_of(f), crc_includes_cr=compat)
    assert message_fields(m) == f["message"]
    ext = dc09.extended_data(m)
    got = ([] if m.msg_id == dc09.NULL
           else [event_fields(c, ext) for c in dc09_core.content_events(m)])
    assert got == f["events"]
    if compat:
        # the deviation is accepted only where the account asks for it
        with pytest.raises(dc09.Dc09CrcError) as e:
            dc09.parse(raw(f))
        assert e.value.crc_includes_cr and e.value.account == f["message"]["account"]


def live_frames():
    return [(doc, f) for doc in (json.loads(p.read_text()) for p in sorted(CORPUS.glob("*.json")))
            for f in doc["frames"] if not f["message"]["encrypted"]]


async def test_every_clear_frame_is_acked_and_stored_by_the_receiver(tmp_path):
    frames = live_frames()
    accounts = sorted({f["message"]["account"].upper() for _, f in frames})
    compat = {f["message"]["account"].upper(): {"compat": list(f["compat"])}
              for _, f in frames if f.get("compat")}
    cfg = Config(db=str(tmp_path / "rx.db"), dc09_tcp=[("127.0.0.1", 0)],
                 dc09_udp=[("127.0.0.1", 0)], dc09_accounts=compat)
    accts = [Account(n, b"", protocol="dc09", supervised=False) for n in accounts]
    t0 = time.time()
    async with running_receiver(cfg, accts) as rx:
        host, port = rx.addresses["dc09_tcp"][0]
        reader, writer = await asyncio.open_connection(host, port)
        rd = dc09.Dc09Reader()
        # all frames in one write, as a concentrator (or the Dahua log's
        # single read) would: replies come back in order, one per frame
        writer.write(b"".join(raw(f) for _, f in frames))
        replies = []
        while len(replies) < len(frames):
            fr = rd.next_frame()
            if fr is dc09.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), 20)
                assert data, "receiver closed after %d replies" % len(replies)
                rd.receive_data(data)
                continue
            replies.append(dc09.parse(fr))
        writer.close()
        for (doc, f), r in zip(frames, replies):
            want = f["message"]
            assert (r.msg_id, r.seq, r.account, r.line) == (
                "ACK", want["seq"], want["account"], want["line"]), (doc["source"], r)
        stored = await rx.store.list_events(limit=1000)
        expect = [(f["message"]["account"].upper(), f["message"]["seq"], e)
                  for _, f in frames for e in f["events"]]
        got = [(e.account, e.seq, {
            "qualifier": e.qualifier, "code": e.code, "partition": e.partition,
            "zone": e.zone, "user": e.user, "text": e.text, "ext": e.ext})
            for e in stored]
        assert got == [(a, s, {k: v for k, v in e.items() if k != "sia_code"})
                       for a, s, e in expect]
        # the panel's time is kept beside the receiver's, never in its place
        panel_times = [f["message"]["timestamp"] for _, f in frames for _ in f["events"]]
        for e, ts in zip(stored, panel_times):
            assert e.event_time == (datetime.fromisoformat(ts).timestamp() if ts else None)
            assert t0 <= e.received_at <= time.time()
