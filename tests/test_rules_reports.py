"""The centre's reports (receiver.rules.reports) over fixture rows, with
the expected numbers worked out by hand in the comments."""

import base64
import hashlib
import re

import pytest

from receiver.rules import reports as rp
from receiver.rules.reports import AlarmFact, EventFact, Filter

T = 1_772_409_600.0  # 2026-03-02 00:00 UTC
BANK = dict(account="1001", site="City Bank", region="central")
FLAT = dict(account="1002", site="Flat 4B", region="north")
FALSE = frozenset(("false_user_error", "false_equipment", "false_weather"))

ALARMS = [
    AlarmFact(1, event_class="burglary", priority=4, code=130, created_at=T,
              acknowledged_at=T + 30, acknowledged_by="anna", resolved_at=T + 300,
              resolved_by="anna", note="False alarm, cleaner", **BANK),
    AlarmFact(2, event_class="holdup", priority=1, code=122, created_at=T + 100,
              acknowledged_at=T + 105, acknowledged_by="olga", resolved_at=T + 1000,
              resolved_by="olga", disposition="real_police_dispatched", **BANK),
    AlarmFact(3, event_class="burglary", priority=4, code=130, created_at=T + 200,
              resolved_at=T + 260, resolved_by="anna",
              note="not a false alarm: window broken", **BANK),
    AlarmFact(4, event_class="trouble", priority=7, code=301, created_at=T + 400,
              resolved_at=T + 500, resolved_by="receiver", disposition="restored", **FLAT),
    AlarmFact(5, event_class="trouble", priority=7, code=302, created_at=T + 600,
              acknowledged_at=T + 660, acknowledged_by="olga", **FLAT),
    AlarmFact(6, event_class="burglary", priority=4, code=134, created_at=T + 700,
              acknowledged_at=T + 790, acknowledged_by="olga", resolved_at=T + 1900,
              resolved_by="olga", disposition="false_user_error", **FLAT),
    AlarmFact(7, event_class="trouble", priority=7, code=454, created_at=T + 800, **BANK),
    AlarmFact(8, event_class="burglary", priority=4, code=130, created_at=T - 10, **BANK),
]
EVENTS = [
    EventFact(code=350, qualifier=1, received_at=T + 10, **BANK),
    EventFact(code=350, qualifier=1, received_at=T + 20, **BANK),
    EventFact(code=350, qualifier=3, received_at=T + 30, **BANK),  # a restore: not counted
    EventFact(code=358, qualifier=1, received_at=T + 40, **FLAT),
    EventFact(code=454, qualifier=1, received_at=T + 50, **BANK),
    EventFact(code=451, qualifier=1, received_at=T + 60, **BANK),
    EventFact(code=454, qualifier=1, received_at=T + 70, **FLAT),
    EventFact(code=454, qualifier=1, received_at=T + 86_400, **FLAT),  # after the range
]


def report(flt=Filter()):
    return rp.build(ALARMS, EVENTS, T, T + 86_400, flt, FALSE)


def test_alarms_by_class_in_the_operators_order():
    assert report().section("alarms_by_class").rows == [
        ["hold-up", 1], ["burglary", 3], ["trouble", 3]]  # alarm 8 is before the range


def test_time_to_acknowledge_and_resolve_per_priority():
    rows = report().section("response_times").rows
    # priority 4: first actions 30, 60 (resolved from pending), 90 -> p50 60, p90 90;
    # resolved after 300, 60, 1200 -> p50 300, p90 1200
    # priority 7: alarm 4 resolved by the receiver counts in neither; 5 acked after
    # 60 and open; 7 open
    assert rows == [
        [1, 1, 1, 5, 5, 5, 1, 900, 900, 900, 0, 0],
        [4, 3, 3, 60, 90, 90, 3, 300, 1200, 1200, 0, 0],
        [7, 3, 1, 60, 60, 60, 0, None, None, None, 1, 2],
    ]


def test_per_operator():
    assert report().section("operators").rows == [
        ["anna", 1, 30, 2, 60],  # resolved 300 and 60: nearest rank p50 is 60
        ["olga", 3, 60, 2, 900],
    ]


def test_false_alarm_rate_from_dispositions_else_notes():
    assert report().section("false_alarms").rows == [
        # 4 restored (not false), 6 false_user_error; 5 not judged
        ["Flat 4B (1002)", 3, 2, 1, 50.0, 2, 0],
        # 1 "False alarm" (note), 2 real (disposition), 3 "not a false alarm" (note)
        ["City Bank (1001)", 4, 3, 1, 33.3, 1, 2],
    ]


def test_troubles_supervision_and_open_close_per_site():
    r = report()
    assert r.section("troubles").rows == [["Flat 4B (1002)", 2], ["City Bank (1001)", 1]]
    assert r.section("supervision").rows == [["City Bank (1001)", 2, 0, 2],
                                             ["Flat 4B (1002)", 0, 1, 1]]
    assert r.section("open_close").columns == [
        "site", "fail to close", "fail to open", "early open", "late open",
        "unscheduled open", "total"]
    assert r.section("open_close").rows == [["City Bank (1001)", 1, 0, 1, 0, 0, 2],
                                            ["Flat 4B (1002)", 1, 0, 0, 0, 0, 1]]


def test_filters_by_region_site_and_operator():
    north = report(Filter(region="north"))
    assert north.section("alarms_by_class").rows == [["burglary", 1], ["trouble", 2]]
    assert north.section("supervision").rows == [["Flat 4B (1002)", 0, 1, 1]]
    bank = report(Filter(account="1001"))
    assert [r[0] for r in bank.section("false_alarms").rows] == ["City Bank (1001)"]
    anna = report(Filter(operator="anna"))
    assert anna.section("alarms_by_class").rows == [["burglary", 2]]
    assert anna.section("open_close").rows == []  # the receiver's own: no operator
    assert anna.filter.words() == "operator anna"
    assert Filter().words() == "whole centre"


def test_percentile_is_nearest_rank():
    assert rp.percentile([], 50) is None
    assert rp.percentile([4, 1, 3, 2], 50) == 2
    assert rp.percentile([4, 1, 3, 2], 90) == 4
    assert rp.percentile(list(range(1, 11)), 90) == 9
    assert rp.percentile([7], 90) == 7


def test_notes_judged_in_words():
    def judge(note, disposition=None):
        return rp.is_false(AlarmFact(1, "1", "", "", "burglary", 4, 130, T, resolved_at=T + 1,
                                     resolved_by="x", note=note, disposition=disposition),
                           FALSE)
    assert judge("false alarm") == (True, "note")
    assert judge("No cause found, detector reset") == (True, "note")
    assert judge("was not a false alarm") == (False, "note")
    assert judge("police on site, arrest") == (False, "note")
    assert judge(None) == (None, "")
    assert judge("false alarm", "real_police_dispatched") == (False, "disposition")


def test_bad_range_is_refused():
    with pytest.raises(ValueError, match="end after it starts"):
        rp.build(ALARMS, EVENTS, T, T)


def test_csv_section_and_long_form():
    r = report()
    assert rp.section_csv(r.section("false_alarms")) == (
        "site,alarms,judged,false,rate,by disposition,by note\n"
        "Flat 4B (1002),3,2,1,50,2,0\n"
        "City Bank (1001),4,3,1,33.3,1,2\n")
    long_form = rp.report_csv(r).splitlines()
    assert long_form[0] == "section,row,column,value"
    assert "alarms_by_class,hold-up,alarms,1" in long_form
    assert "response_times,7,resolve p50," in long_form  # none: empty, not 0
    assert "open_close,City Bank (1001),early open,1" in long_form


def test_html_is_self_contained_printable_and_escapes_names():
    evil = AlarmFact(9, "666", '<script>alert(1)</script>', "north", "trouble", 7, 300,
                     T + 5)
    r = rp.build(ALARMS + [evil], EVENTS, T, T + 86_400, Filter(), FALSE)
    page = rp.report_html(r, centre="Centre <North>")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Centre &lt;North&gt;" in page
    assert not re.search(r"\b(src|href)=|https?://(?!www\.w3\.org/2000/svg)", page)
    assert " style=" not in page  # the CSP allows the one style block only
    assert "@media print" in page
    # durations in words in the page, numbers in the CSV
    assert "<td>15 min</td>" in page  # olga's resolve p50 (900 s)
    assert "<td>33.3 %</td>" in page
    [style] = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert rp.content_security_policy() == (
        "default-src 'none'; style-src 'sha256-%s'; img-src data:" % digest)


def test_an_empty_range_says_so_rather_than_showing_empty_tables():
    r = rp.build([], [], T, T + 60)
    page = rp.report_html(r)
    assert page.count("None in this range.") == len(r.sections) and "<svg" not in page
    assert rp.report_csv(r) == "section,row,column,value\n"


# -- in a real browser, served with the CSP the console will send --------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM),
                    reason="Debian's chromium is not installed at %s" % CHROMIUM)
def test_the_page_renders_under_its_content_security_policy():
    sync_api = pytest.importorskip("playwright.sync_api")
    page_html = rp.report_html(report())
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            refused = []
            page.on("console", lambda m: refused.append(m.text)
                    if "Content Security Policy" in m.text else None)
            page.route("http://report.test/", lambda route: route.fulfill(
                status=200, body=page_html, headers={
                    "Content-Type": "text/html; charset=utf-8",
                    "Content-Security-Policy": rp.content_security_policy()}))
            page.goto("http://report.test/")
            # the style block applied (th background), the charts drawn
            bg = page.eval_on_selector("th", "e => getComputedStyle(e).backgroundColor")
            assert bg == "rgb(238, 238, 238)"
            assert page.locator("svg rect").count() == 3 + 3 + 2 + 2
            assert refused == []
        finally:
            browser.close()


def test_patrol_time_to_arrive_per_priority():
    """Issue 19: from the first patrol dispatched to the first on scene."""
    sent = [
        AlarmFact(20, event_class="holdup", priority=1, code=122, created_at=T + 10,
                  patrol_dispatched_at=T + 40, patrol_arrived_at=T + 280, **BANK),
        AlarmFact(21, event_class="holdup", priority=1, code=122, created_at=T + 20,
                  patrol_dispatched_at=T + 50, patrol_arrived_at=T + 150, **FLAT),
        AlarmFact(22, event_class="holdup", priority=1, code=121, created_at=T + 30,
                  patrol_dispatched_at=T + 60, **BANK),  # on the way
        AlarmFact(23, event_class="burglary", priority=4, code=170, created_at=T + 40,
                  patrol_dispatched_at=T + 70, patrol_arrived_at=T + 670, **BANK),
    ]
    r = rp.build(ALARMS + sent, EVENTS, T, T + 86_400, Filter(), FALSE)
    # priority 1: arrived after 240 and 100 s (nearest rank: p50 100, p90 240), one not
    assert r.section("patrol_response").rows == [[1, 3, 2, 100, 240, 240, 1],
                                                 [4, 1, 1, 600, 600, 600, 0]]
    assert sent[0].patrol_arrival_s == 240 and sent[2].patrol_arrival_s is None
    page = rp.report_html(r)
    assert "Patrol time to arrive (p90) by priority" in page and "<td>10 min</td>" in page
    assert "patrol_response,1,arrive p50,100" in rp.report_csv(r).splitlines()
    # a site filter keeps that site's
    rows = rp.build(ALARMS + sent, EVENTS, T, T + 86_400, Filter(account="1002"),
                    FALSE).section("patrol_response").rows
    assert rows == [[1, 1, 1, 100, 100, 100, 0]]
