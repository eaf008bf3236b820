"""Remote commands end to end: a real receiver with the console, the real
firmware under the MicroPython VM connected over TCP, commands sent
through the console's JSON API (POST /api/accounts/{number}/command)."""

import asyncio
import json
import os

import pytest

from protocol.lean import glwire as w
from receiver import cli
from receiver.store import Account
from receiver.web.testing import PASSWORDS, Client, console_receiver
from testkit import vm
from testkit.configs import TEST_KEY, scenario_config
from testkit.panel import PanelProcess
from testkit.wait import wait_until

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

ACCOUNT = 4242


def _accounts():
    return {ACCOUNT: Account(str(ACCOUNT), TEST_KEY, site_name="test bank"),
            4343: Account("4343", os.urandom(32), site_name="never connected")}


async def _state(panel) -> str:
    st = await asyncio.to_thread(panel.state)
    return st["partitions"][0]["state"]


async def _connected(rx):
    return rx.connections.stream_for(str(ACCOUNT)) is not None


async def test_supervisor_commands_a_firmware_panel_over_tcp(tmp_path, monkeypatch, capsys):
    async with console_receiver(tmp_path, accounts=_accounts(), router=False) as (rx, base, _):
        _, port = rx.addresses["tcp"][0]
        cfg = scenario_config(port)
        cfg["receiver"]["backup"] = None
        sent = []
        real_command = rx.core.command

        def recording_command(*a, **kw):
            seq, frame = real_command(*a, **kw)
            sent.append(frame)
            return seq, frame
        rx.core.command = recording_command

        panel = PanelProcess(cfg, str(tmp_path / "panel"))
        try:
            await wait_until(lambda: _connected(rx), timeout=60, what="panel connected")
            async with Client(base) as sam, Client(base) as olga:
                assert (await sam.login("sam")).status == 200
                assert (await olga.login("olga")).status == 200
                path = "/api/accounts/%d/command" % ACCOUNT

                r = await sam.json("POST", path, json={"command": "disarm", "partition": 1})
                assert r["result_name"] == "ok", r
                assert await _state(panel) == "disarmed"

                r = await sam.json("POST", path, json={"command": "arm-away", "partition": 1})
                assert r["result_name"] == "ok", r
                assert r["partitions"][0]["state_name"] in ("armed_away", "exit_delay"), r
                async def armed():
                    return await _state(panel) == "armed_away"
                await wait_until(armed, timeout=30, what="panel armed away")
                r = await sam.json("POST", path, json={"command": "status"})
                assert r["result"] == w.R_OK
                assert r["partitions"][0]["state_name"] == "armed_away", r

                # the panel's own 407 remote open/close arrives as an event
                async def close_event():
                    return [e for e in await rx.store.list_events(account=str(ACCOUNT))
                            if e.code == 407]
                await wait_until(close_event, timeout=30, what="407 close event stored")

                # an operator may not command panels; nothing reaches the panel
                before = len(sent)
                r = await olga.json("POST", path, status=403, json={"command": "disarm"})
                assert "may not" in r["error"]
                assert len(sent) == before
                # a write needs the CSRF token
                async with sam.request("POST", path, csrf=False,
                                       json={"command": "disarm"}) as resp:
                    assert resp.status == 403
                assert await _state(panel) == "armed_away"

                # a panel with no open connection: a clear refusal
                r = await sam.json("POST", "/api/accounts/4343/command", status=409,
                                   json={"command": "status"})
                assert "no open TCP connection" in r["error"]
                await sam.json("POST", "/api/accounts/9999/command", status=404,
                               json={"command": "status"})
                await sam.json("POST", path, status=400, json={"command": "self-destruct"})

                # the CLI goes through the same API as a named console user
                cli_args = ["panels", "command", str(ACCOUNT), "status", "--by", "sam",
                            "--url", base, "--json"]
                monkeypatch.setenv("GUARDLINE_CONSOLE_PASSWORD", PASSWORDS["sam"])
                capsys.readouterr()
                assert await asyncio.to_thread(cli.main, cli_args) == 0
                out = json.loads(capsys.readouterr().out)
                assert out["result_name"] == "ok"
                assert out["partitions"][0]["state_name"] == "armed_away"
                monkeypatch.setenv("GUARDLINE_CONSOLE_PASSWORD", PASSWORDS["olga"])
                olga_args = ["panels", "command", str(ACCOUNT), "disarm", "--by", "olga",
                             "--url", base]
                assert await asyncio.to_thread(cli.main, olga_args) == 1
                assert "403" in capsys.readouterr().err
                assert await _state(panel) == "armed_away"

                # the commands are in the console audit log, by name
                audit = await sam.json("GET", "/api/audit")
                mine = [a for a in audit["audit"] if a["action"] == "panel.command"]
                assert {a["actor"] for a in mine} == {"sam"}
                assert any("command=arm-away" in a["detail"] for a in mine)

                # disarm, then replay the earlier arm-away frame byte for byte:
                # the panel has seen that sequence and must ignore it
                r = await sam.json("POST", path, json={"command": "disarm", "partition": 1})
                assert r["result_name"] == "ok", r
                assert await _state(panel) == "disarmed"
                arm_frame = sent[1]
                rx.connections.stream_for(str(ACCOUNT)).send(arm_frame)
                # a later status round trip proves the panel has read past the replay
                r = await sam.json("POST", path, json={"command": "status"})
                assert r["partitions"][0]["state_name"] == "disarmed", r
                assert await _state(panel) == "disarmed"
                last_seq = r["seq"]

            # our command sequence was stored before each send
            a = await rx.store.get_account(str(ACCOUNT))
            assert a.tx_seq >= last_seq
        finally:
            await asyncio.to_thread(panel.close)
