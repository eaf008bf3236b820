"""glwire's own strict UTF-8 check agrees with CPython's decoder."""

from hypothesis import given, settings, strategies as st

from protocol.lean import glwire as w


def _cpython_ok(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@settings(max_examples=3000)
@given(st.binary(max_size=12))
def test_utf8_valid_matches_cpython_on_arbitrary_bytes(b):
    assert w.utf8_valid(b) == _cpython_ok(b)


@given(st.text(max_size=8))
def test_utf8_valid_accepts_every_encoded_text(t):
    try:
        b = t.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates are not encodable
        return
    assert w.utf8_valid(b)


def test_utf8_boundaries():
    for b in (b"\xc0\x80", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
              b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\x80"):
        assert not w.utf8_valid(b), b
    for b in (b"\xc2\x80", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xf4\x8f\xbf\xbf", b"Tresor"):
        assert w.utf8_valid(b), b
