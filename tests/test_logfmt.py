"""receiver.logfmt: one record is one line whatever a logged value holds
(issue 14: a newline in a console login name forged a receiver log line),
and a flood of one message is bounded (the disk is shared with the store)."""

import io
import logging

import pytest

from receiver.logfmt import FloodFilter, LogfmtFormatter, escape_controls, kv, q, setup


def line(msg, *args, exc_info=None):
    rec = logging.LogRecord("receiver.web.api", logging.WARNING, __file__, 1, msg, args,
                            exc_info)
    return LogfmtFormatter().format(rec)


def fields(text: str) -> dict:
    """A small logfmt reader: key=value, "quoted" with backslash escapes."""
    out, i = {}, 0
    while i < len(text):
        j = text.index("=", i)
        key = text[i:j]
        i = j + 1
        if text[i:i + 1] == '"':
            i += 1
            v = []
            while text[i] != '"':
                if text[i] == "\\":
                    esc = text[i + 1]
                    if esc in "xu":
                        n = 2 if esc == "x" else 4
                        v.append(chr(int(text[i + 2:i + 2 + n], 16)))
                        i += 2 + n
                        continue
                    v.append({"n": "\n", "r": "\r", "t": "\t"}.get(esc, esc))
                    i += 2
                    continue
                v.append(text[i])
                i += 1
            i += 1
            val = "".join(v)
        else:
            j = text.find(" ", i)
            j = len(text) if j < 0 else j
            val = text[i:j]
            i = j
        assert key not in out, "field %s twice in %r" % (key, text)
        out[key] = val
        i += 1
    return out


def test_a_newline_in_a_login_name_cannot_forge_a_line_or_a_field():
    name = "olga\nts=2025-01-01T00:00:00.000Z level=error logger=receiver.app msg=forged"
    out = line("console login failed user=%s ip=%s", name, "10.0.0.1")
    assert "\n" not in out
    f = fields(out)
    assert f["level"] == "warning" and f["msg"] == "console login failed"
    assert f["ip"] == "10.0.0.1" and f["user"] == name  # read back exactly


@pytest.mark.parametrize("ch", [chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\x9b",
                                                                "\u2028", "\u2029", "\u202e"])
def test_every_control_character_is_escaped(ch):
    out = line("x user=%s", "a" + ch + "b")
    assert ch not in out and "\n" not in out
    assert fields(out)["user"] == "a" + ch + "b"
    assert ch not in q("a" + ch + "b") and q("a" + ch + "b").startswith('"')
    assert ch not in escape_controls("a" + ch + "b")


def test_spaces_quotes_and_equals_cannot_add_fields():
    f = fields(line("x user=%s ip=%s", 'a level=error msg="b"', "1.2.3.4"))
    assert f["user"] == 'a level=error msg="b"' and f["level"] == "warning"
    f = fields(line("x user=%s", '"admin"'))  # looks quoted, is not ours: quoted again
    assert f["user"] == '"admin"'


def test_values_quoted_by_the_caller_numbers_and_tracebacks_stay_one_line():
    assert line("x detail=%s n=%d", q("bad MAC"), 5).endswith('detail="bad MAC" n=5')
    assert kv(a=1, b="two words", c="") == 'a=1 b="two words" c=""'
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys
        out = line("handler failed peer=%s", "x", exc_info=sys.exc_info())
    assert "\n" not in out and "boom\\nsecond line" in out
    assert "\n" not in line("bad call n=%d", "not a number")  # a broken call, still one line


def test_a_flood_of_one_message_is_bounded_and_counted():
    t = [0.0]
    stream = io.StringIO()
    h = logging.StreamHandler(stream)
    h.setFormatter(LogfmtFormatter())
    h.addFilter(FloodFilter(rate=10, burst=20, clock=lambda: t[0]))
    log = logging.getLogger("test.flood")
    log.propagate = False
    log.addHandler(h)
    try:
        for i in range(5000):  # one second's flood
            log.warning("connection refused peer=%s", "10.0.%d.%d" % (i // 250, i % 250))
        log.warning("something else entirely")
        t[0] = 1.0
        log.warning("connection refused peer=%s", "10.9.9.9")
    finally:
        log.removeHandler(h)
    lines = stream.getvalue().splitlines()
    refused = [x for x in lines if "connection refused" in x]
    assert len(refused) == 21  # the burst, then one more after a second
    assert refused[-1].endswith("suppressed=4980")
    assert any("something else entirely" in x for x in lines)  # other messages unaffected


def test_setup_installs_the_flood_bound():
    stream = io.StringIO()
    h = setup("INFO", stream)
    try:
        assert any(isinstance(f, FloodFilter) for f in h.filters)
    finally:
        logging.getLogger().removeHandler(h)
