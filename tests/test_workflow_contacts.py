"""Contacts, call lists, passcodes and site notes (receiver.workflow.contacts,
receiver.workflow.notes), fed data and explicit time."""

from __future__ import annotations

import copy
import datetime as dt
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo

import argon2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.workflow import contacts, notes
from receiver.workflow.common import ActionRefused
from tests.workflow_cases import config_error

ROOT = Path(__file__).resolve().parent.parent
SITES = ROOT / "examples" / "sites"
BANK = SITES / "1001-city-bank.toml"
FLAT = SITES / "1002-flat-4b.toml"
VIENNA = ZoneInfo("Europe/Vienna")
# The demo's passcodes (docs/workflow-design.md, "The demo"): the example
# files hold their hashes.
DEMO_PASSCODES = {
    ("1001", "Branch security desk"): ("granite 2290", "velvet 31"),
    ("1001", "Anna Berg"): ("orchid 4417", "harbour 9"),
    ("1001", "Piotr Nowak"): ("maple 7731", None),
    ("1002", "Maria Keller"): ("tulip 42", "rain 77"),
    ("1002", "Jonas Keller"): ("falcon 58", None),
}
# argon2id with the smallest parameters argon2-cffi offers: the same code
# path as the default hasher, at a cost that lets hypothesis try hundreds.
CHEAP = argon2.PasswordHasher.from_parameters(argon2.profiles.CHEAPEST)


def at(y, mo, d, h, mi, tz=VIENNA) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()


def _doc(path=BANK) -> dict:
    return tomllib.loads(path.read_text())


# -- the example site files ----------------------------------------------------------------


def test_example_sites_load():
    bank = contacts.load_site(str(BANK), loaded_at=5.0, loaded_by="ada")
    assert bank.account == "1001" and bank.time_zone == "Europe/Vienna"
    assert [c.name for c in bank.contacts] == ["Branch security desk", "Anna Berg",
                                               "Piotr Nowak", "Regional security office"]
    assert set(bank.call_orders) == {"holdup", "burglary", "fire", "default"}
    assert [n.author for n in bank.notes] == ["ada", "ada"]
    assert all(n.permanent and n.created_at == 5.0 for n in bank.notes)
    flat = contacts.load_site(str(FLAT))
    assert flat.contact("Ilse Horvath").has_passcode is False
    desk = bank.contact("Branch security desk")
    assert desk.phones[1] == contacts.Phone("duty mobile", "+00 555 0109")
    assert desk.phones[1].tel == "tel:+005550109"
    assert bank.contact("Regional security office").phones[0].label == ""
    doc = _doc()
    doc["contacts"][3]["phones"] = "+00 555 0190"  # one number, no list
    assert contacts.parse_site(doc).contact("Regional security office").phones == (
        contacts.Phone("", "+00 555 0190"),)


def test_example_hashes_are_the_demo_passcodes():
    """The docs tell the demo's passcodes; the example files must hold their
    hashes (default argon2id parameters), and nothing else."""
    sites = {s.account: s for s in (contacts.load_site(str(BANK)), contacts.load_site(str(FLAT)))}
    for (account, name), (code, duress) in DEMO_PASSCODES.items():
        c = sites[account].contact(name)
        assert argon2.extract_parameters(c.passcode_hash) == argon2.extract_parameters(
            contacts.HASHER.hash("x"))
        # one argon2 verify each (verify_passcode runs two; it is tested below)
        assert contacts.HASHER.verify(c.passcode_hash, contacts.normalise_passcode(code))
        if duress:
            assert contacts.HASHER.verify(c.duress_hash, contacts.normalise_passcode(duress))
        else:
            assert c.duress_hash is None
    for path in (BANK, FLAT):
        text = path.read_text()
        for code, duress in DEMO_PASSCODES.values():
            assert code not in text and (duress is None or duress not in text)


def test_contact_json_never_holds_a_hash():
    bank = contacts.load_site(str(BANK))
    for c in bank.contacts:
        j = c.to_json()
        assert "$argon2" not in repr(j)
        assert set(j) == {"name", "role", "phones", "has_passcode", "has_duress_passcode",
                          "available"}
    assert bank.contact("Anna Berg").to_json()["has_duress_passcode"] is True


# -- site file errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["contacts"][1].update(passcode="orchid 4417"),
     "1001.toml: contact 2: a passcode is never written in a file"),
    (lambda d: d["contacts"][1].update(passcode_hash="orchid 4417"),
     "1001.toml: contact 2 (Anna Berg): passcode_hash: must be an argon2id hash"),
    (lambda d: d["contacts"][1].update(passcode_hash="$argon2id$v=19$garbage"),
     "1001.toml: contact 2 (Anna Berg): passcode_hash: is not a valid argon2id hash"),
    (lambda d: d["contacts"][2].update(duress_hash=d["contacts"][1]["duress_hash"]) or
     d["contacts"][2].pop("passcode_hash"),
     "1001.toml: contact 3 (Piotr Nowak): a duress passcode needs a passcode too"),
    (lambda d: d["contacts"][2].update(phones=[]),
     "1001.toml: contact 3 (Piotr Nowak): phones: must list 1 to 5 phones"),
    (lambda d: d["contacts"][2].update(phones=["call me"]),
     "1001.toml: contact 3 (Piotr Nowak): phones[1]: 'call me' is not a phone number"),
    (lambda d: d["contacts"][2].update(phones=[{"number": "+00 555", "fax": True}]),
     "1001.toml: contact 3 (Piotr Nowak): phones[1]: unknown key(s) fax"),
    (lambda d: d["contacts"][2].update(available=["weekdays 8-18"]),
     "1001.toml: contact 3 (Piotr Nowak): available: 'weekdays 8-18' is not a time window"),
    (lambda d: d["contacts"][2].update(available=["mon-fry 08:00-18:00"]),
     "1001.toml: contact 3 (Piotr Nowak): available: 'mon-fry 08:00-18:00': days are mon"),
    (lambda d: d["contacts"][2].update(available=["mon 08:00-25:00"]),
     "1001.toml: contact 3 (Piotr Nowak): available: 'mon 08:00-25:00': a time is 00:00 to"),
    (lambda d: d["contacts"][2].update(available=["mon 08:00-08:00"]),
     "1001.toml: contact 3 (Piotr Nowak): available: 'mon 08:00-08:00' is empty"),
    (lambda d: d["contacts"][2].update(available="daily 00:00-24:00"),
     "1001.toml: contact 3 (Piotr Nowak): available: must be a list of windows"),
    (lambda d: d["contacts"][2].pop("name"),
     "1001.toml: contact 3: name: must be a non-empty text"),
    (lambda d: d["contacts"].append(copy.deepcopy(d["contacts"][0])),
     "1001.toml: two contacts are named Branch security desk"),
    (lambda d: d["call_orders"].update(holdup=["Anna Berg", "Olga"]),
     "1001.toml: [call_orders] holdup: names no contact of this site: 'Olga'"),
    (lambda d: d["call_orders"].update(holdup=["Anna Berg", "Anna Berg"]),
     "1001.toml: [call_orders] holdup: names a contact twice"),
    (lambda d: d["call_orders"].update(vip=["Anna Berg"]),
     "1001.toml: [call_orders]: unknown key(s) vip"),
    (lambda d: d.update(account=1001),
     "1001.toml: account: must be the account number as a string"),
    (lambda d: d.update(time_zone="CEST"),
     "1001.toml: time_zone: must be an IANA time zone such as \"Europe/Vienna\" (got 'CEST')"),
    (lambda d: d.update(time_zone="../../etc/passwd"),
     "1001.toml: time_zone: must be an IANA time zone"),
    (lambda d: d.pop("time_zone"),
     "1001.toml: time_zone: must be an IANA time zone"),
    (lambda d: d["notes"][0].update(until="friday"),
     "1001.toml: notes[1]: until: must be a TOML date-time"),
    (lambda d: d["notes"][0].update({"from": dt.datetime(2025, 6, 2, 8, 0)}),
     "1001.toml: notes[1]: a note with from needs until"),
    (lambda d: d["notes"][0].update({"from": dt.datetime(2025, 6, 2), "until": dt.date(2025, 6, 1)}),
     "1001.toml: notes[1]: from must be before until"),
    (lambda d: d["notes"][1].update(text="x" * 501),
     "1001.toml: notes[2]: text: has 501 characters; at most 500"),
    (lambda d: d.update(contacts=[d["contacts"][0]] * 51),
     "1001.toml: contacts: must be at most 50"),
])
def test_site_file_errors_name_the_contact(mutate, expected):
    assert config_error(contacts.parse_site, _doc(), mutate, "1001.toml").startswith(expected)


# -- availability and call lists ------------------------------------------------------------


def test_windows_in_the_site_time_zone_including_overnight_and_dst():
    night = contacts.parse_window("daily 18:00-08:00", "w")
    office = contacts.parse_window("mon-fri 08:00-18:00", "w")
    c = contacts.Contact("Piotr", available=(night,))
    o = contacts.Contact("Anna", available=(office,))
    tz = "Europe/Vienna"
    assert c.available_at(at(2025, 6, 2, 7, 59), tz)  # Monday morning: last night's window
    assert not c.available_at(at(2025, 6, 2, 8, 0), tz)
    assert c.available_at(at(2025, 6, 2, 18, 0), tz)
    assert o.available_at(at(2025, 6, 6, 17, 59), tz) and not o.available_at(at(2025, 6, 7, 10, 0),
                                                                               tz)
    # the same instant is 17:30 in Vienna and 16:30 in London
    t = at(2025, 6, 2, 17, 30)
    assert o.available_at(t, tz) and o.available_at(t, "Europe/London")
    late = at(2025, 6, 2, 18, 30)
    assert not o.available_at(late, tz) and o.available_at(late, "Europe/London")
    # the night of the clocks going forward (30 March 2025, 02:00 -> 03:00)
    assert c.available_at(at(2025, 3, 30, 3, 30), tz)
    # sun-tue wraps the week; a Friday-night window holds on Saturday morning
    assert contacts.parse_window("Mon-FRI 08:00-18:00", "w").days == office.days
    wrap = contacts.parse_window("sun-tue 10:00-11:00", "w")
    assert wrap.days == frozenset({6, 0, 1})
    fri = contacts.parse_window("fri 22:00-06:00", "w")
    assert fri.contains(5, 5 * 60) and not fri.contains(6, 5 * 60)  # Sat 05:00 yes, Sun no
    allday = contacts.parse_window("sat,sun 00:00-24:00", "w")
    assert allday.contains(5, 0) and allday.contains(6, 1439) and not allday.contains(0, 0)
    assert contacts.Contact("x").available_at(t, tz)  # no window: at any time


def test_call_list_puts_who_can_be_reached_first_and_falls_back():
    bank = contacts.load_site(str(BANK))
    sat_night = at(2025, 6, 7, 23, 0)
    cl = contacts.call_list(bank, "holdup", sat_night)
    assert cl.words() == "the hold-up call list"
    assert [(e.position, e.contact.name, e.available) for e in cl.entries] == [
        (2, "Anna Berg", True), (1, "Branch security desk", False),
        (3, "Regional security office", False)]
    tue_noon = at(2025, 6, 3, 12, 0)
    cl = contacts.call_list(bank, "holdup", tue_noon)
    assert [e.contact.name for e in cl.entries][0] == "Branch security desk"
    cl = contacts.call_list(bank, "trouble", tue_noon)
    assert cl.order == "default"
    assert cl.words() == "the default call list (the site has no trouble list)"
    bare = contacts.Site("9", "UTC", bank.contacts, {})
    cl = contacts.call_list(bare, "holdup", tue_noon)
    assert cl.words() == "all the site's contacts (the site has no call list)"
    assert len(cl.entries) == 4
    # who is next
    cl = contacts.call_list(bank, "holdup", sat_night)
    calls = [contacts.CallRecord(1, 0.0, "olga", "Anna Berg", "+00 555 0101", "no_answer")]
    assert contacts.next_to_call(cl, calls).contact.name == "Branch security desk"
    calls += [contacts.CallRecord(1, 0.0, "olga", n, "", "no_answer")
              for n in ("Branch security desk", "Regional security office")]
    assert contacts.next_to_call(cl, calls) is None


# -- passcodes ------------------------------------------------------------------------------


def test_passcode_normalisation_and_limits():
    assert contacts.normalise_passcode("Tulip-42") == contacts.normalise_passcode(" tulip 42 ")
    assert contacts.normalise_passcode("ＴＵＬＩＰ４２") == "tulip42"  # full-width, NFKC
    for bad in ("12 3", "", "x" * 65, None, 1234):
        with pytest.raises(ActionRefused) as e:
            contacts.normalise_passcode(bad)
        assert str(bad) not in str(e.value) or bad in ("", None)
    with pytest.raises(ActionRefused, match="must differ"):
        contacts.passcode_hashes("tulip 42", "TULIP-42", CHEAP)


@settings(max_examples=40, deadline=None)
@given(code=st.text(min_size=4, max_size=20).filter(lambda s: len(s.strip()) >= 4),
       duress=st.text(min_size=4, max_size=20).filter(lambda s: len(s.strip()) >= 4),
       other=st.text(max_size=24))
def test_verify_says_correct_wrong_or_duress(code, duress, other):
    try:
        n_code, n_duress = contacts.normalise_passcode(code), contacts.normalise_passcode(duress)
    except ActionRefused:
        return
    if n_code == n_duress:
        return
    h, dh = contacts.passcode_hashes(code, duress, CHEAP)
    assert code not in (h, dh) and n_code not in h
    c = contacts.Contact("Anna", passcode_hash=h, duress_hash=dh)
    assert contacts.verify_passcode(c, code, CHEAP) == contacts.PASSCODE_CORRECT
    assert contacts.verify_passcode(c, duress, CHEAP) == contacts.DURESS
    try:
        n_other = contacts.normalise_passcode(other)
    except ActionRefused:
        n_other = None
    expected = {n_code: contacts.PASSCODE_CORRECT, n_duress: contacts.DURESS}.get(
        n_other, contacts.PASSCODE_WRONG)
    assert contacts.verify_passcode(c, other, CHEAP) == expected
    no_duress = contacts.Contact("Piotr", passcode_hash=h)
    assert contacts.verify_passcode(no_duress, duress, CHEAP) == contacts.PASSCODE_WRONG


def test_verify_runs_both_checks_whatever_matches(monkeypatch):
    """The cost does not tell which hash matched: both are always checked."""
    h, dh = contacts.passcode_hashes("tulip 42", "rain 77", CHEAP)
    c = contacts.Contact("Maria", passcode_hash=h, duress_hash=dh)
    seen = []
    real = CHEAP.verify

    class Counting:
        def hash(self, secret):
            return CHEAP.hash(secret)

        def verify(self, stored, given):
            seen.append(stored)
            return real(stored, given)
    for given_code in ("tulip 42", "rain 77", "wrong one"):
        seen.clear()
        contacts.verify_passcode(c, given_code, Counting())
        assert sorted(seen) == sorted([h, dh])
    seen.clear()
    contacts.verify_passcode(contacts.Contact("Jonas", passcode_hash=h), "tulip 42", Counting())
    assert len(seen) == 2 and seen[1] == h  # a dummy duress hash, then the passcode


def test_no_passcode_on_file_is_refused():
    with pytest.raises(ActionRefused, match="Ilse has no passcode on file"):
        contacts.verify_passcode(contacts.Contact("Ilse"), "anything", CHEAP)


def test_effects_table():
    assert set(contacts.EFFECTS) == set(contacts.OUTCOMES)
    assert contacts.EFFECTS[contacts.DURESS].escalate_to == "holdup"
    assert [o for o in contacts.OUTCOMES if contacts.EFFECTS[o].escalate_to] == [contacts.DURESS]
    assert contacts.EFFECTS[contacts.PASSCODE_CORRECT].completes_passcode_step
    assert set(contacts.RECORDED) | set(contacts.VERIFIED) == set(contacts.OUTCOMES)
    assert not set(contacts.RECORDED) & set(contacts.VERIFIED)


# -- site notes -----------------------------------------------------------------------------


def test_notes_shown_order_and_expiry():
    now = at(2025, 6, 10, 9, 0)
    perm_old = notes.SiteNote("1001", "key box", "ada", now - 900_000)
    perm_new = notes.SiteNote("1001", "guard dog", "ada", now - 1000)
    holiday = notes.SiteNote("1001", "owner on holiday", "olga", now - 50,
                             expires_at=at(2025, 6, 13, 18, 0))
    works = notes.SiteNote("1001", "branch closed for works", "olga", now - 40,
                           expires_at=at(2025, 6, 11, 18, 0), starts_at=at(2025, 6, 10, 8, 0))
    later = notes.SiteNote("1001", "painters", "olga", now - 30, expires_at=at(2025, 6, 20, 0, 0),
                           starts_at=at(2025, 6, 16, 0, 0))
    gone = notes.SiteNote("1001", "old", "olga", now - 99_999, expires_at=now)
    shown = notes.shown([perm_new, holiday, gone, later, perm_old, works], now)
    assert [n.text for n in shown] == ["branch closed for works", "owner on holiday",
                                       "key box", "guard dog"]
    assert [n.text for n in notes.shown([later, gone], at(2025, 6, 16, 0, 0))] == ["painters"]
    assert holiday.when_words("Europe/Vienna") == "until Fri 13 Jun 18:00"
    assert works.when_words("Europe/Vienna") == "from Tue 10 Jun 08:00 until Wed 11 Jun 18:00"
    assert perm_old.when_words("Europe/Vienna") == ""


def test_new_note_rules():
    now = 1_750_000_000.0
    n = notes.new_note("1001", "  owner away  ", "olga", now, expires_at=now + 3600)
    assert n.text == "owner away" and not n.permanent and n.author == "olga"
    assert notes.new_note("1001", "dog", "olga", now).permanent
    for kw, msg in [({"text": ""}, "needs a text"),
                    ({"text": "x" * 501}, "at most 500 characters"),
                    ({"expires_at": now - 1}, "in the future"),
                    ({"starts_at": now + 10}, "needs an end"),
                    ({"starts_at": now + 10, "expires_at": now + 5}, "end before it starts"),
                    ({"expires_at": now + 400 * 86400}, "at most a year")]:
        args = {"text": "note", **kw}
        with pytest.raises(ActionRefused, match=msg):
            notes.new_note("1001", args.pop("text"), "olga", now, **args)


def test_file_note_times_without_offset_are_site_local():
    doc = _doc()
    doc["notes"] = [{"text": "holiday", "until": dt.datetime(2025, 6, 13, 18, 0)},
                    {"text": "works", "from": dt.date(2025, 6, 16),
                     "until": dt.datetime(2025, 6, 20, 18, 0, tzinfo=dt.timezone.utc)}]
    site = contacts.parse_site(doc, "x.toml")
    assert site.notes[0].expires_at == at(2025, 6, 13, 18, 0)
    assert site.notes[1].starts_at == at(2025, 6, 16, 0, 0)
    assert site.notes[1].expires_at == dt.datetime(2025, 6, 20, 18, 0,
                                                   tzinfo=dt.timezone.utc).timestamp()
