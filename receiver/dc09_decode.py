"""What ``guardline-receiver decode`` shows for a SIA DC-09 frame: the
header, every event of the message (in SIA and Contact ID terms, as the
receiver would store it), every extended data block, the location, and
the field deviations the frame carries.  Pure: bytes and a key in, a dict
out; the CLI finds the key (``--key`` or the account in the store) and
prints the dict.

The decoder applies no time window (a captured frame is old by the time
anyone decodes it); it says where the receiver would refuse the frame
(a deviation the account must be given a compatibility option for).
"""

from __future__ import annotations

import re

from protocol import contactid, dc09
from receiver import dc09_core

# "87CD0037"ADM-CID"..." as a log prints a frame: CRC and length, then the
# quoted ID token.  With LF first it is the frame itself.
_FRAME_START = re.compile(rb'\n?[0-9A-Fa-f]{4}0[0-9A-Fa-f]{3}"\*?[A-Z]')


def looks_like_dc09(raw: bytes) -> bool:
    """Do these bytes start like a DC-09 frame (LF, CRC, length, '"')?"""
    return raw[:1] == b"\n" and bool(_FRAME_START.match(raw))


def frame_from_text(text: str) -> tuple[bytes, bool] | None:
    """A frame pasted as text (a log line: 'CEF0003F"SIA-DCS"0001L#...'),
    as bytes with its LF and CR, and whether they had to be added; None
    when the text does not start like a DC-09 frame."""
    t = text.strip("\r\n")
    b = t.encode("latin-1", "replace")
    if not _FRAME_START.match(b):
        return None
    added = not (text.startswith("\n") and text.rstrip("\x00").endswith("\r"))
    return b"\n" + b.lstrip(b"\n") + (b"" if b.endswith(b"\r") else b"\r"), added


def _header(m: dc09.Dc09Message) -> dict:
    return {"id": m.msg_id, "encrypted": m.encrypted, "seq": m.seq, "receiver": m.receiver,
            "line": m.line, "account": m.account,
            "timestamp": m.timestamp.isoformat() if m.timestamp else None}


def _deviations(m: dc09.Dc09Message) -> list[dict]:
    out = []
    for d in m.deviations:
        item = {"name": d, "what": dc09.DEVIATIONS[d]}
        if d in dc09_core.COMPAT_OPTIONS:
            item["receiver"] = ("refused unless the account has [dc09.accounts.%s] compat = "
                                "[\"%s\"]" % (m.account.upper(), d))
        else:
            item["receiver"] = "accepted (logged once per account)"
        out.append(item)
    return out


def report(raw: bytes, key: bytes | None, key_source: str = "") -> dict:
    """The decode of one frame; 'valid' False with 'error' when it is not a
    frame we would take (CRC, format), or does not decrypt with ``key``."""
    try:
        head = dc09.parse_header(raw, crc_includes_cr=True)
    except dc09.Dc09Error as e:
        reason = "bad_crc" if isinstance(e, dc09.Dc09CrcError) else "bad_format"
        return {"protocol": "dc09", "valid": False, "error": str(e), "reason": reason,
                "length": len(raw)}
    out = {"protocol": "dc09", "valid": True, "length": len(raw), "message": _header(head),
           "deviations": _deviations(head)}
    if head.encrypted and key is None:
        out["authenticated"] = None
        out["note"] = ("encrypted and no key: header only (give --key, or the account %s "
                       "in --db)" % head.account)
        return out
    try:
        m = dc09.parse(raw, key_lookup=lambda _a: key, crc_includes_cr=True)
    except dc09.Dc09KeyError:
        out.update(valid=False, authenticated=False, reason="bad_key",
                   error="does not decrypt with the %skey" % (key_source + " " if key_source
                                                             else ""))
        return out
    except dc09.Dc09TimestampError as e:
        out.update(valid=False, authenticated=True, reason="bad_timestamp", error=str(e))
        return out
    except dc09.Dc09Error as e:
        out.update(valid=False, reason="bad_format", error=str(e))
        return out
    out["message"] = _header(m)
    if m.encrypted:
        out["authenticated"] = True
    if m.bad_timestamp is not None:
        out["message"]["timestamp_text"] = m.bad_timestamp
        out["note"] = ("timestamp %r cannot be read: the receiver stores the event without "
                       "the panel's time" % m.bad_timestamp)
    out["message"]["data"] = m.data
    ext = dc09.extended_data(m)
    out["ext"] = {k: {"name": dc09.EXTENDED_DATA.get(k, "extended data %s" % k), "value": v}
                  for k, v in ext.items()}
    out["location"] = dc09.location(ext)
    events = []
    if m.msg_id in (dc09.ADM_CID, dc09.SIA_DCS):
        for c in dc09_core.content_events(m):
            user_report = contactid.zone_is_user(c.code)
            if c.sia_code and c.sia_code not in dc09.SIA_TO_CID:
                description = "SIA code %s (no Contact ID equivalent: stored as code 000)" % (
                    c.sia_code)
            else:
                description = contactid.describe(c.code, c.qualifier, zone=c.zone,
                                                 partition=c.partition)
            events.append({
                "sia_code": c.sia_code, "qualifier": c.qualifier, "code": c.code,
                "partition": c.partition, "zone": None if user_report else c.zone,
                "user": c.user, "event_class": contactid.event_class(c.code),
                "description": description, "text": c.text, "modifiers": c.modifiers})
    out["events"] = events
    if m.msg_id == dc09.NULL:
        out["note"] = "link test (NULL): no event; the receiver ACKs it and restarts supervision"
    elif m.msg_id not in (dc09.ADM_CID, dc09.SIA_DCS):
        out["note"] = "ID token %s: not an event the receiver stores" % m.msg_id
    return out
