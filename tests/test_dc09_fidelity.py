"""SIA DC-09 fidelity with the panels in the field (issue 15), on loopback
with a real receiver and store: several events in one SIA-DCS block,
extended data, text in Windows-1252 and UTF-8, the user of an event,
tolerated field deviations, clear-text timestamps, the `decode` and
`events --json` commands, and the console's alarm detail in Chromium.

The receiver's DC-09 clock is pinned (``rx.dc09.clock``) as in
test_dc09_rx.py, whose helpers these tests use."""

from __future__ import annotations

import json
import logging
import os
import re
import time

import pytest

from protocol import dc09
from receiver import dc09_core, routing
from receiver.alarms import CLASSES
from receiver.cli import main as cli_main
from receiver.config import Config, ConfigError, load
from receiver.store import Account
from receiver.testing import running_receiver
from tests.test_dc09_rx import K128, Client, expect_nak, parse_reply, ts, udp_ask

CLEAR = "BEEF"
KEYED = "A128"
LOOSE = "0E1D"        # an ELDES-like panel: CRC over CR allowed, clear time checked
STRICT_TIME = "C1EA"  # clear line whose timestamps are tested too


def router():
    # burglary and fire go to different centres: each event is routed on its own
    return routing.parse({
        "centers": {"ps": {"level": "police_station", "name": "Central Police"},
                    "fb": {"level": "police_station", "name": "Fire Brigade Desk"}},
        "routes": [{"regions": ["*"], "classes": ["burglary"], "police_station": "ps"},
                   {"regions": ["*"], "classes": ["fire"], "police_station": "fb"}]},
        known_classes=CLASSES)


def accounts():
    return [Account(CLEAR, b"", protocol="dc09", supervised=False,
                    zones={"1": "vault door", "5": "server room smoke"}),
            Account(KEYED, K128, protocol="dc09", supervised=False),
            Account(LOOSE, b"", protocol="dc09", supervised=False),
            Account(STRICT_TIME, b"", protocol="dc09", supervised=False),
            Account("7303658550", b"", protocol="dc09", supervised=False)]


@pytest.fixture
async def rx(tmp_path):
    cfg = Config(db=str(tmp_path / "rx.db"), dc09_tcp=[("127.0.0.1", 0)],
                 dc09_udp=[("127.0.0.1", 0)], router=router(),
                 dc09_accounts={LOOSE: {"compat": ["crc_includes_cr"]},
                                STRICT_TIME: {"check_clear_time": True}})
    async with running_receiver(cfg, accounts()) as r:
        r.now = float(int(time.time()))
        r.dc09.clock = lambda: r.now
        yield r


def sia(account, seq, data, extended=(), t=None, encrypted=False, encoding="ascii"):
    m = dc09.Dc09Message(dc09.SIA_DCS, encrypted, seq, None, "1", account,
                         "#%s|%s" % (account, data), list(extended),
                         None if t is None else ts(t))
    return build(m, encrypted, encoding)


def adm(account, seq, data, extended=(), t=None, encrypted=False, encoding="ascii"):
    m = dc09.Dc09Message(dc09.ADM_CID, encrypted, seq, None, "1", account,
                         "#%s|%s" % (account, data), list(extended),
                         None if t is None else ts(t))
    return build(m, encrypted, encoding)


def build(m, encrypted, encoding):
    kw = {} if encoding == "ascii" else {"text_encoding": encoding}
    return dc09.build(m, K128 if encrypted else None, **kw)


def with_cr_in_crc(frame: bytes) -> bytes:
    """The same frame as a panel that counts the closing CR in CRC and length."""
    body = frame[9:-1]
    return b"\n%04X0%03X%s\r" % (dc09.crc16(body + b"\r"), len(body) + 1, body)


async def stored(rx, account=None):
    return await rx.store.list_events(account=account)


# -- several events in one block ---------------------------------------------------------------


@pytest.mark.parametrize("encrypted", [False, True])
async def test_every_event_of_a_block_is_stored_classified_alarmed_and_routed(rx, encrypted):
    account = KEYED if encrypted else CLEAR
    c = await Client.connect(rx)
    r = await c.ask(sia(account, 7, "Nri1/BA01/ri2/FA05", t=rx.now, encrypted=encrypted),
                    K128 if encrypted else None)
    assert (r.msg_id, r.seq) == ("ACK", 7)
    burglary, fire = await stored(rx, account)
    assert (burglary.code, burglary.partition, burglary.zone,
            burglary.event_class) == (130, 1, 1, "burglary")
    assert (fire.code, fire.partition, fire.zone, fire.event_class) == (
        110, 2, 5, "fire")
    alarms = {a.event_id: a for a in await rx.store.list_alarms()}
    assert alarms[burglary.id].routed_to == {"police_station": "ps"}
    assert alarms[fire.id].routed_to == {"police_station": "fb"}
    c.close()


async def test_block_commits_in_one_transaction_before_the_one_ack(rx):
    # One transaction for the block's four events: when the store cannot
    # keep the last of them (a trigger drops the fire's row), none of the
    # four is stored and the panel is NAKed busy; once the store takes it,
    # the same message is stored whole and ACKed.  (Counting commits is no
    # proof: the receiver's own loops commit meanwhile.)
    await rx.store.run_write(lambda c: c.execute(
        "CREATE TRIGGER drop_fire BEFORE INSERT ON events WHEN NEW.code = 110 "
        "BEGIN SELECT RAISE(IGNORE); END"))
    c = await Client.connect(rx)
    f = sia(CLEAR, 8, "Nri1/BA01/BA02/BA03/ri2/FA05")
    r = await c.ask(f)
    assert r.msg_id == "NAK"
    assert await stored(rx, CLEAR) == []
    await rx.store.run_write(lambda c: c.execute("DROP TRIGGER drop_fire"))
    r = await c.ask(f)
    assert r.msg_id == "ACK"
    got = await stored(rx, CLEAR)
    assert sorted((e.partition, e.code) for e in got) == [(1, 130)] * 3 + [(2, 110)]
    c.close()


async def test_a_copy_of_the_whole_message_stores_nothing(rx):
    c = await Client.connect(rx)
    f = sia(CLEAR, 9, "Nri1/BA01/ri2/FA05")
    assert (await c.ask(f)).msg_id == "ACK"
    assert (await c.ask(f)).msg_id == "ACK"  # retransmission after a lost ACK
    assert len(await stored(rx, CLEAR)) == 2
    assert len(await rx.store.list_alarms()) == 2
    assert rx.metrics.duplicates._value.get() == 2
    c.close()


async def test_user_from_the_id_modifier_and_from_user_reports(rx):
    c = await Client.connect(rx)
    assert (await c.ask(sia(CLEAR, 10, "Nri1/id12/CL"))).msg_id == "ACK"
    assert (await c.ask(sia(CLEAR, 11, "Nri1/id5/BB03"))).msg_id == "ACK"
    assert (await c.ask(adm(CLEAR, 12, "1401 01 007"))).msg_id == "ACK"
    closing, bypass, opening = await stored(rx, CLEAR)
    assert (closing.code, closing.qualifier, closing.zone, closing.user) == (
        401, 3, 12, 12)
    assert (bypass.code, bypass.zone, bypass.user) == (570, 3, 5)
    assert (opening.code, opening.zone, opening.user) == (401, 7, 7)
    c.close()


# -- extended data, text encodings ----------------------------------------------------------


async def test_extended_data_is_kept_with_a_location(rx):
    c = await Client.connect(rx)
    ext = [("X", "4.8952"), ("Y", "52.3702"), ("M", "0026B9E4268B"),
           ("V", "https://cam.example/1.jpg"), ("Q", "vendor data")]
    assert (await c.ask(adm(CLEAR, 13, "1130 01 001", ext))).msg_id == "ACK"
    [e] = await stored(rx, CLEAR)
    assert e.ext == {"X": "4.8952", "Y": "52.3702", "M": "0026B9E4268B",
                        "V": "https://cam.example/1.jpg", "Q": "vendor data"}
    assert e.location == {"lat": 52.3702, "lon": 4.8952}
    c.close()


async def test_same_sequence_with_other_extended_data_is_another_message(rx):
    c = await Client.connect(rx)
    assert (await c.ask(adm(CLEAR, 14, "1130 01 001", [("X", "4.8952"), ("Y", "52.3702")]))
            ).msg_id == "ACK"
    assert (await c.ask(adm(CLEAR, 14, "1130 01 001", [("X", "4.9000"), ("Y", "52.3800")]))
            ).msg_id == "ACK"
    assert [e.ext["X"] for e in await stored(rx, CLEAR)] == ["4.8952", "4.9000"]
    c.close()


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8"])
@pytest.mark.parametrize("encrypted", [False, True])
async def test_text_that_is_not_ascii_is_acked_and_stored_as_unicode(rx, encoding, encrypted):
    account = KEYED if encrypted else CLEAR
    c = await Client.connect(rx)
    if encrypted:
        f = sia(account, 15, "Nri1/BA01^Küche^", [("I", "Alarm Küche – Tür")], t=rx.now,
                encrypted=True, encoding=encoding)
    else:
        # the bytes as the panel sends them, framed by hand
        body = ('"SIA-DCS"0015L1#BEEF[#BEEF|Nri1/BA01^Küche^][IAlarm Küche – Tür]'
                .encode(encoding))
        f = b"\n%04X0%03X%s\r" % (dc09.crc16(body), len(body), body)
        if encoding == "cp1252":
            assert b"K\xfcche" in f  # the Windows-1252 byte itself on the wire
    r = await c.ask(f, K128 if encrypted else None)
    assert (r.msg_id, r.seq) == ("ACK", 15)
    [e] = await stored(rx, account)
    assert e.text == "^Küche^" and e.ext == {"I": "Alarm Küche – Tür"}
    c.close()


# -- field deviations -------------------------------------------------------------------------------


async def test_empty_line_prefix_and_trailing_nul_are_accepted_and_logged_once(rx, caplog):
    caplog.set_level(logging.WARNING, logger="receiver.dc09_core")
    # as the panel of ioBroker.sia issue 11 sent them (tests/dc09_corpus)
    null = b'\nBB86002C"NULL"0001L#7303658550[]_15:39:38,06-07-2019\r\x00'
    event = b'\nCEF0003F"SIA-DCS"0001L#7303658550[#7303658550|NBA4]_11:52:09,05-07-2019\r'
    c = await Client.connect(rx)
    for f in (null, event, null, event + b"\x00"):
        r = await c.ask(f)
        assert (r.msg_id, r.account, r.line) == ("ACK", "7303658550", "")  # echoed as sent
    r = await udp_ask(rx, null)
    assert r.msg_id == "ACK"
    [e] = await stored(rx, "7303658550")
    assert (e.code, e.zone) == (130, 4)
    logged = [m for m in caplog.messages if "field deviation tolerated" in m]
    assert sorted(re.search(r"deviation=(\w+)", m)[1] for m in logged) == [
        "empty_line_prefix", "trailing_nul"]
    c.close()


async def test_crc_over_cr_only_for_an_account_with_the_option(rx, caplog):
    caplog.set_level(logging.WARNING, logger="receiver.dc09_core")
    c = await Client.connect(rx)
    # refused (NAK) where not enabled, with a hint how to enable it
    expect_nak(await c.ask(with_cr_in_crc(adm(CLEAR, 16, "1130 01 001"))), rx.now)
    assert any("compat" in m and CLEAR in m for m in caplog.messages)
    r = await c.ask(with_cr_in_crc(adm(LOOSE, 16, "1130 01 001")))
    assert (r.msg_id, r.seq) == ("ACK", 16)
    r = await c.ask(with_cr_in_crc(adm(LOOSE, 17, "1130 01 002")))
    assert r.msg_id == "ACK"
    assert len(await stored(rx, LOOSE)) == 1 + 1 and await stored(rx, CLEAR) == []
    logged = [m for m in caplog.messages if "deviation=crc_includes_cr " in m]
    assert len(logged) == 1 and LOOSE in logged[0]  # once per account
    c.close()


def test_config_compat_and_clear_time_options(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('[dc09.accounts.0e1d]\ncompat = ["crc_includes_cr"]\ncheck_clear_time = true\n')
    assert load(str(p)).dc09_accounts == {"0E1D": {"compat": ["crc_includes_cr"],
                                                   "check_clear_time": True}}
    for bad in ('compat = ["lax"]', 'compat = "crc_includes_cr"', 'check_clear_time = 1'):
        p.write_text("[dc09.accounts.0E1D]\n%s\n" % bad)
        with pytest.raises(ConfigError):
            load(str(p))


# -- clear-text timestamps --------------------------------------------------------------------------


async def test_clear_message_an_hour_off_keeps_both_times(rx):
    c = await Client.connect(rx)
    r = await c.ask(adm(CLEAR, 18, "1130 01 001", t=rx.now - 3600))
    assert r.msg_id == "ACK"
    [e] = await stored(rx, CLEAR)
    assert e.received_at == rx.now and e.event_time == rx.now - 3600
    c.close()


async def test_unreadable_clear_timestamp_is_not_a_nak(rx, caplog):
    caplog.set_level(logging.WARNING, logger="receiver.dc09_core")
    body = b'"ADM-CID"0019L1#BEEF[#BEEF|1130 01 001]_25:61:00,13-45-2024'
    c = await Client.connect(rx)
    r = await c.ask(b"\n%04X0%03X%s\r" % (dc09.crc16(body), len(body), body))
    assert (r.msg_id, r.seq) == ("ACK", 19)
    [e] = await stored(rx, CLEAR)
    assert e.event_time is None and e.received_at == rx.now
    assert e.ext == {"timestamp_text": "25:61:00,13-45-2024"}
    assert any("unreadable_timestamp" in m for m in caplog.messages)
    c.close()


async def test_clear_time_check_per_account(rx):
    c = await Client.connect(rx)
    expect_nak(await c.ask(adm(STRICT_TIME, 20, "1130 01 001", t=rx.now - 3600)), rx.now)
    expect_nak(await c.ask(adm(STRICT_TIME, 21, "1130 01 001")), rx.now)  # no timestamp
    r = await c.ask(adm(STRICT_TIME, 22, "1130 01 001", t=rx.now - 5))
    assert (r.msg_id, r.seq) == ("ACK", 22)
    assert len(await stored(rx, STRICT_TIME)) == 1
    c.close()


# -- the command line ---------------------------------------------------------------------------------


async def test_events_json_carries_user_ext_and_location(rx, capsys):
    c = await Client.connect(rx)
    await c.ask(adm(CLEAR, 23, "1130 01 001", [("X", "4.8952"), ("Y", "52.3702"),
                                              ("I", "Tür offen")], encoding="cp1252"))
    await c.ask(sia(CLEAR, 24, "Nri1/id12/CL"))
    c.close()
    await rx.ingest({"account": CLEAR, "protocol": "native", "dedupe_key": "n:1",
                     "qualifier": 1, "code": 401, "partition": 1, "zone": 3})
    rc = await _cli(["events", "--db", rx.config.db, "--json"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    burglary, closing, native = lines
    assert burglary["ext"] == {"X": "4.8952", "Y": "52.3702", "I": "Tür offen"}
    assert burglary["location"] == {"lat": 52.3702, "lon": 4.8952}
    assert burglary["user"] is None
    assert (closing["user"], closing["ext"], closing["location"]) == (12, None, None)
    assert native["user"] == 3  # a native user report names its user too


async def _cli(argv):
    import asyncio
    return await asyncio.to_thread(cli_main, argv)


def test_decode_shows_every_event_and_extended_field_of_a_dc09_frame(tmp_path, capsys):
    frame = sia(CLEAR, 25, "Nri1/BA01/ri2/FA05", [("X", "4.8952"), ("Y", "52.3702")])
    assert cli_main(["decode", "--db", str(tmp_path / "none.db"), frame.hex()]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"] == "dc09" and out["valid"]
    assert [(e["sia_code"], e["code"], e["partition"], e["zone"]) for e in out["events"]] == [
        ("BA", 130, 1, 1), ("FA", 110, 2, 5)]
    assert out["ext"]["X"] == {"name": "longitude", "value": "4.8952"}
    assert out["location"] == {"lat": 52.3702, "lon": 4.8952}


async def test_decode_finds_the_key_in_the_store_or_takes_it_on_the_command_line(rx, capsys):
    frame = sia(KEYED, 26, "Nri1/BA01", t=rx.now - 86400, encrypted=True)  # a day old
    rc = await _cli(["decode", "--db", rx.config.db, frame.hex()])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["authenticated"] and out["events"][0]["code"] == 130
    rc = await _cli(["decode", "--db", rx.config.db, frame.hex(), "--key", "00" * 16])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and out["reason"] == "bad_key" and out["authenticated"] is False
    rc = await _cli(["decode", frame.hex(), "--key", K128.hex(), "--db",
                     str(rx.config.db) + ".absent"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["valid"]


def test_decode_takes_a_frame_as_a_log_prints_it(tmp_path, capsys):
    line = 'F19A002B"ADM-CID"0056L9999#9999[#9999|1900 00 001]'  # ELDES, CRC over CR
    assert cli_main(["decode", "--db", str(tmp_path / "x.db"), line]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["message"]["account"] == "9999"
    assert [d["name"] for d in out["deviations"]] == ["crc_includes_cr"]
    assert "compat" in out["deviations"][0]["receiver"]
    assert cli_main(["decode", "--db", str(tmp_path / "x.db"), "not a frame"]) == 2


# -- the console ------------------------------------------------------------------------------------


async def test_alarm_detail_shows_the_location_with_a_map_link(tmp_path):
    pytest.importorskip("playwright.async_api")
    from playwright.async_api import async_playwright, expect
    from receiver.web.testing import PASSWORDS, console_receiver
    from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS

    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    async with console_receiver(tmp_path) as (rx, base, _sink):
        await rx.add_account(Account("C0DE", b"", protocol="dc09", site_name="Harbour kiosk"))
        core = dc09_core.Dc09Core(rx.account)
        v = core.judge(adm("C0DE", 1, "1130 01 001", [("X", "4.8952"), ("Y", "52.3702")]),
                       time.time())
        assert v.kind == dc09_core.EVENT
        await rx.ingest_many(v.events)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1440, "height": 900})
                problems = []
                page.on("pageerror", lambda e: problems.append(str(e)))
                await page.goto(base + "/login")
                await page.fill("#name", "olga")
                await page.fill("#password", PASSWORDS["olga"])
                await page.click("button[type=submit]")
                row = page.locator("#queue tbody tr[data-alarm-id]", has_text="Harbour kiosk")
                await row.click()
                loc = page.locator("#location")
                await expect(loc).to_contain_text("52.37020, 4.89520")
                link = loc.locator("a")
                href = await link.get_attribute("href")
                assert "mlat=52.3702" in href and "mlon=4.8952" in href
                assert await link.get_attribute("rel") == "noopener noreferrer"
                await page.screenshot(path=str(tmp_path / "alarm-location.png"))
                assert problems == []
            finally:
                await browser.close()
