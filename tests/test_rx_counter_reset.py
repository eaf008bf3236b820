"""A panel whose sequence counter went back (flash wiped, board swapped
with the same account) must not lose events that reuse old sequence
numbers: through the real server and store, a reused sequence with new
content is stored; a true retransmission is stored once."""

from receiver.config import Config
from receiver.testing import make_accounts, running_receiver
from testkit.session_panel import SessionPanel, event_msg


async def test_reused_sequences_after_a_counter_reset_are_stored(tmp_path):
    accounts = make_accounts(1, first=77)
    acct = accounts[77]
    cfg = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)])
    async with running_receiver(cfg, accounts) as rx:
        host, port = rx.addresses["tcp"][0]
        before = SessionPanel(77, acct.key, host, port)
        msgs = {seq: event_msg(code=130, zone=seq) for seq in range(1, 6)}
        for seq in range(1, 6):
            await before.deliver(seq, msgs[seq])
        # the same panel retransmits seq 5 (its ACK was lost): stored once
        await before.deliver(5, msgs[5])
        await before.close()
        after = SessionPanel(77, acct.key, host, port)  # counter reset to 1
        for seq in range(1, 4):
            await after.deliver(seq, event_msg(code=122, zone=20 + seq))
        await after.close()
        rows = await rx.store.list_events(account="77")
    got = sorted((e["code"] if isinstance(e, dict) else e.code,
                  e["zone"] if isinstance(e, dict) else e.zone) for e in rows)
    assert got == sorted([(130, z) for z in range(1, 6)] + [(122, 21), (122, 22), (122, 23)])
