"""The test kit's one control-protocol client (testkit/control.py), fed
bytes: the sans-I/O codec's invariants (a reply is matched by its id, a
late one is console text, nothing unbounded), and the synchronous client
against a real socket for each way a simulated panel can fail to answer."""

import socket
import threading

import pytest

from testkit.control import (MAX_LINE, NEED_DATA, ConsoleLine, ControlCodec,
                             ControlNotListening, ControlRefused, ControlTimeout,
                             ControlUnreachable, Reply, SimControl, parse_address)
from testkit.net import free_port


def events(codec: ControlCodec) -> list:
    out = []
    while (ev := codec.next_event()) is not NEED_DATA:
        out.append(ev)
    return out


def test_a_request_is_one_json_line_with_a_fresh_id_the_caller_cannot_set():
    c = ControlCodec()
    first = c.request("zone", zone=3, state="alarm")
    assert first == b'{"cmd": "zone", "id": 1, "zone": 3, "state": "alarm"}\n'
    assert c.encode({"cmd": "state", "id": 99, "brief": True}) == \
        b'{"cmd": "state", "id": 2, "brief": true}\n'
    assert c.pending == 2


def test_the_reply_is_matched_by_id_across_chunks_and_log_lines_are_console():
    c = ControlCodec()
    c.request("ping")
    c.receive_data(b"I (12) boot\r\nlevel=info msg=x\n{\"ok\": true, ")
    assert events(c) == [ConsoleLine(b"I (12) boot"), ConsoleLine(b"level=info msg=x")]
    assert c.pending == 1  # half a reply is not an answer
    c.receive_data(b'"id": 1}\n')
    assert events(c) == [Reply({"ok": True, "id": 1})]
    assert c.pending is None


def test_a_late_reply_to_an_abandoned_command_is_never_the_current_answer():
    c = ControlCodec()
    c.request("state")
    c.abandon()  # given up on (a board still booting)
    c.request("zone", zone=1, state="alarm")
    c.receive_data(b'{"ok": true, "id": 1, "state": "old"}\n'
                   b'{"not": "a reply"}\n'
                   b'{"ok": false, "id": 2, "error": "no such zone"}\n')
    assert events(c) == [ConsoleLine(b'{"ok": true, "id": 1, "state": "old"}'),
                         ConsoleLine(b'{"not": "a reply"}'),
                         Reply({"ok": False, "id": 2, "error": "no such zone"})]
    # an answer with nothing in flight is console text too
    c.receive_data(b'{"ok": true, "id": 2}\n')
    assert events(c) == [ConsoleLine(b'{"ok": true, "id": 2}')]


def test_a_reply_without_an_id_answers_the_command_in_flight():
    c = ControlCodec()
    c.request("ac", on=False)
    c.receive_data(b'{"ok": true}\n')  # the bench fixture's shape
    assert events(c) == [Reply({"ok": True})]


def test_a_console_that_never_ends_a_line_is_handed_on_in_bounded_pieces():
    c = ControlCodec()
    c.receive_data(b"x" * (MAX_LINE - 1))
    assert c.next_event() is NEED_DATA
    c.receive_data(b"xx")
    piece = c.next_event()
    assert isinstance(piece, ConsoleLine) and len(piece.text) == MAX_LINE + 1
    assert c.next_event() is NEED_DATA


@pytest.mark.parametrize("text, why", [("7800", "HOST:PORT"), ("host:", "HOST:PORT"),
                                       ("host:0", "HOST:PORT"), ("host:70000", "HOST:PORT"),
                                       (":7800", "HOST:PORT")])
def test_a_bad_control_address_is_refused_in_words(text, why):
    with pytest.raises(ValueError, match=why):
        parse_address(text)


def test_addresses_v4_and_v6():
    assert parse_address("127.0.0.1:7800") == ("127.0.0.1", 7800)
    assert parse_address("[::1]:7801") == ("::1", 7801)


class OneShotServer:
    """A control socket that answers each connection with ``answer(request)``
    (None: close without a word; ... : stay silent)."""

    def __init__(self, answer):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.addr = self.sock.getsockname()
        self.answer = answer
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                req = conn.makefile("rb").readline()
                self.requests.append(req)
                out = self.answer(req)
                if out is ...:
                    conn.recv(1)  # silent until the client gives up
                elif out is not None:
                    conn.sendall(out)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def server():
    made = []

    def make(answer):
        made.append(OneShotServer(answer))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_sim_control_returns_the_reply_and_a_refusal_as_the_firmware_said_it(server):
    s = server(lambda req: b"booting...\n" + (
        b'{"ok": true, "id": 1, "queue": 0}\n' if b'"ping"' in req
        else b'{"ok": false, "id": 1, "error": "zone 9 is not configured"}\n'))
    ctl = SimControl("%s:%d" % s.addr)
    assert ctl({"cmd": "ping"}) == {"ok": True, "queue": 0}  # our id is not the caller's
    assert ctl({"cmd": "zone", "zone": 9}) == {"ok": False,
                                               "error": "zone 9 is not configured"}
    with pytest.raises(ControlRefused, match="zone refused: zone 9 is not configured"):
        ctl.call("zone", zone=9)
    assert s.requests[0] == b'{"cmd": "ping", "id": 1}\n'


def test_sim_control_says_why_there_is_no_answer(server):
    with pytest.raises(ControlNotListening, match="is the simulated panel running"):
        SimControl(("127.0.0.1", free_port()))({"cmd": "ping"}, timeout=5)
    junk = server(lambda req: b"Traceback (most recent call last):\n")
    with pytest.raises(ControlUnreachable, match="answered something that is not JSON: "
                                                 "b'Traceback"):
        SimControl(junk.addr)({"cmd": "ping"}, timeout=5)
    closed = server(lambda req: None)
    with pytest.raises(ControlUnreachable, match="closed without an answer"):
        SimControl(closed.addr)({"cmd": "ping"}, timeout=5)
    silent = server(lambda req: ...)
    with pytest.raises(ControlTimeout, match="did not answer within"):
        SimControl(silent.addr)({"cmd": "ping"}, timeout=0.3)
