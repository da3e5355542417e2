"""Staff commands: found above the quote of a reply, parsed against the grammar table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import CommandError
from bot.parse.commands import (
    MAX_COMMANDS_PER_MAIL,
    MAX_REPORT_INTERVAL,
    Command,
    CommandProblem,
    extract_command_lines,
    parse_commands,
    parse_due,
    parse_duration,
)
from bot.rules.commands import ADMIN, COMMANDS

BERLIN = ZoneInfo("Europe/Berlin")
UTC_TZ = ZoneInfo("UTC")


def one(line: str, tz: ZoneInfo = BERLIN) -> Command | CommandProblem:
    (result,) = parse_commands(line, tz)
    return result


def ok(line: str, tz: ZoneInfo = BERLIN) -> Command:
    result = one(line, tz)
    assert isinstance(result, Command), result
    return result


def problem(line: str) -> CommandProblem:
    result = one(line)
    assert isinstance(result, CommandProblem), result
    return result


# ---------------------------------------------------------------- finding the lines

GMAIL_REPLY = """\
Thanks, we need more.

/request certificate-list due 2026-12-05
   /request reports every 48h

Alice
Root Program

On Mon, 30 Nov 2026 at 09:12, Example CA Incidents <incidents@exampleca.test>
wrote:

> Please find our notification attached.
> /close
"""

OUTLOOK_REPLY = """\
/request final-report due 2026-12-20
/note CA called us; agreed on the date.

Best regards,
Alice

________________________________
From: Example CA Incidents <incidents@exampleca.test>
Sent: Monday, November 30, 2026 9:12 AM
To: rootnotify@program.test
Subject: [INC-2026-0001] Update

/close
"""

OUTLOOK_NO_RULE = """\
/disqualify-audit

From: Example CA Incidents <incidents@exampleca.test>
Sent: Monday, November 30, 2026 9:12 AM
Subject: RE: [INC-2026-0001]

/reopen
"""

SIGNATURE = """\
/status
--
Alice, Root Program
/close
"""

ORIGINAL_MESSAGE = """\
/accept final-report
-----Original Message-----
From: incidents@exampleca.test
/close
"""

GERMAN_ATTRIBUTION = """\
/exceptional on

Am 30.11.2026 um 09:12 schrieb Example CA <incidents@exampleca.test>:
> /exceptional off
"""


def test_commands_above_a_gmail_quote_are_found_and_the_quote_is_not_read() -> None:
    assert extract_command_lines(GMAIL_REPLY) == [
        "/request certificate-list due 2026-12-05",
        "/request reports every 48h",
    ]


def test_outlook_header_block_ends_the_reply() -> None:
    assert extract_command_lines(OUTLOOK_REPLY) == [
        "/request final-report due 2026-12-20",
        "/note CA called us; agreed on the date.",
    ]
    assert extract_command_lines(OUTLOOK_NO_RULE) == ["/disqualify-audit"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (SIGNATURE, ["/status"]),
        (ORIGINAL_MESSAGE, ["/accept final-report"]),
        (GERMAN_ATTRIBUTION, ["/exceptional on"]),
        ("> /close\n/close\n", []),
    ],
)
def test_signature_and_other_quote_markers_end_the_reply(body: str, expected: list[str]) -> None:
    assert extract_command_lines(body) == expected


def test_paths_and_urls_in_prose_are_not_commands() -> None:
    body = (
        "The log is at /var/log/ca.log and\n"
        "/etc/pki/tls was changed; see https://example.test/close\n"
        "/24 of the network\n"
        "/s/ Alice\n"
        "  /close\n"
    )
    assert extract_command_lines(body) == ["/close"]


def test_a_misspelt_command_is_still_a_command_line() -> None:
    assert extract_command_lines("/requets certificate-list\n") == ["/requets certificate-list"]


def test_a_reply_with_too_many_commands_is_cut_with_a_problem() -> None:
    body = "/status\n" * (MAX_COMMANDS_PER_MAIL + 10)
    results = parse_commands(body, UTC_TZ)
    assert len(results) == MAX_COMMANDS_PER_MAIL + 1
    assert isinstance(results[-1], CommandProblem)
    assert "more than" in results[-1].error
    assert len(extract_command_lines(body)) == MAX_COMMANDS_PER_MAIL


def test_a_staff_reply_reads_as_commands_in_order() -> None:
    results = parse_commands(GMAIL_REPLY, BERLIN)
    assert [(c.name, c.what) for c in results if isinstance(c, Command)] == [
        ("request", "certificate-list"),
        ("request", "reports"),
    ]


# ---------------------------------------------------------------- each command


def test_request_certificate_list_with_and_without_due() -> None:
    c = ok("/request certificate-list due 2026-12-05")
    assert (c.name, c.what, c.rule) == ("request", "certificate-list", "R2")
    assert c.due == datetime(2026, 12, 5, 22, 59, 59, tzinfo=UTC)
    assert ok("/request certificate-list").due is None


@pytest.mark.parametrize(
    ("text", "every"),
    [
        ("7d", timedelta(days=7)),
        ("48h", timedelta(hours=48)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(hours=36)),
        ("7 days", timedelta(days=7)),
        ("1 week 2 days", timedelta(days=9)),
        ("12H", timedelta(hours=12)),
    ],
)
def test_request_reports_every_duration(text: str, every: timedelta) -> None:
    c = ok(f"/request reports every {text}")
    assert (c.what, c.every, c.rule, c.due) == ("reports", every, "R3", None)


def test_request_final_report_needs_a_due_date() -> None:
    c = ok("/request final-report due 2026-12-20")
    assert (c.what, c.rule) == ("final-report", "P4")
    assert c.due == datetime(2026, 12, 20, 22, 59, 59, tzinfo=UTC)
    p = problem("/request final-report")
    assert "expected /request final-report due DATE" in p.error
    assert "/request final-report due DATE" in p.usage


def test_request_investigative_report_due_is_optional() -> None:
    assert ok("/request investigative-report").rule == "R5"
    c = ok("/request investigative-report due 2027-01-31T12:00:00Z")
    assert c.due == datetime(2027, 1, 31, 12, tzinfo=UTC)


def test_request_info_carries_free_text_and_an_optional_due() -> None:
    c = ok("/request info due 2026-12-01: Which HSM model, and its firmware?")
    assert c.text == "Which HSM model, and its firmware?"
    assert c.due == datetime(2026, 12, 1, 22, 59, 59, tzinfo=UTC)
    c = ok("/request info: which sub-CAs share the key?")
    assert (c.text, c.due, c.rule) == ("which sub-CAs share the key?", None, "R1a")
    assert "free text" in problem("/request info due 2026-12-01").error


def test_notice_revoke_root_by_name_hash_and_date() -> None:
    c = ok("/notice revoke-root Example CA Root R1 on 2026-12-24")
    assert (c.name, c.what, c.rule) == ("notice", "revoke-root", "P1")
    assert c.target == "Example CA Root R1"
    assert c.due == datetime(2026, 12, 24, 22, 59, 59, tzinfo=UTC)
    c = ok("/notice revoke-root 3A:7F:00:11:22:33:44:55")
    assert (c.target, c.due) == ("3A:7F:00:11:22:33:44:55", None)


def test_notice_root_name_in_quotes_may_end_in_on_something() -> None:
    c = ok('/notice revoke-root "Root on Fire" on 2026-12-24')
    assert c.target == "Root on Fire"
    assert c.due is not None
    assert ok('/notice revoke-root "Root on Fire"').due is None


def test_notice_with_a_bad_date_is_a_problem_not_a_root_name() -> None:
    assert "is not a date" in problem("/notice revoke-root Example Root on tomorrow").error


@pytest.mark.parametrize(
    ("line", "name", "what", "rule"),
    [
        ("/exceptional on", "exceptional", "on", "P1"),
        ("/exceptional OFF", "exceptional", "off", "P1"),
        ("/require third-party-investigator", "require", "third-party-investigator", "P6"),
        ("/disqualify-audit", "disqualify-audit", None, "P7"),
        ("/accept final-report", "accept", "final-report", "R4"),
        ("/close", "close", None, ADMIN),
        ("/reopen", "reopen", None, ADMIN),
        ("/Status", "status", None, ADMIN),
        ("/REQUEST Certificate-List", "request", "certificate-list", "R2"),
    ],
)
def test_commands_without_arguments(line: str, name: str, what: str | None, rule: str) -> None:
    c = ok(line)
    assert (c.name, c.what, c.rule, c.line) == (name, what, rule, line)


def test_note_keeps_its_text_as_written() -> None:
    c = ok("/note  Told the CA's auditor (P5). Browser block in place.  ")
    assert c.text == "Told the CA's auditor (P5). Browser block in place."
    assert c.rule == "P2"


def test_only_status_may_come_outside_an_incident_thread() -> None:
    assert ok("/status").needs_incident is False
    assert all(ok(row.usage.replace("[due DATE]", "").replace("DURATION", "7d")
                  .replace("ROOT [on DATE]", "R1").replace("DATE", "2026-12-05")
                  .replace("on|off", "on")).needs_incident
               for row in COMMANDS if row.name != "status")


# ---------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("/requets certificate-list", "unknown command /requets; did you mean /request?"),
        ("/stauts", "did you mean /status?"),
        ("/frobnicate", "unknown command /frobnicate"),
        ("/request", "/request needs one of: certificate-list, reports"),
        ("/request certificate-lst", "unknown /request certificate-lst; did you mean "
                                     "certificate-list?"),
        ("/request reports", "expected /request reports every DURATION"),
        ("/request reports every", "expected /request reports every DURATION"),
        ("/request reports every 0d", "must be positive"),
        ("/request reports every 30m", "'30m' is not a duration"),
        ("/request reports every 400d", "at most 366 days"),
        ("/request reports every 7d7d", "twice"),
        ("/request final-report due 2026-13-45",
         "'2026-13-45' is not a date (use YYYY-MM-DD or an ISO 8601 time)"),
        ("/request final-report due 05.12.2026", "'05.12.2026' is not a date"),
        ("/request final-report due 2026-12-05 please", "expected /request final-report"),
        ("/exceptional maybe", "expected /exceptional on|off"),
        ("/close now", "/close takes nothing after it"),
        ("/note", "expected /note free text"),
        ("/accept final report", "expected /accept final-report"),
        ("/notice revoke-root", "expected /notice revoke-root ROOT [on DATE]"),
        ("/notice ban-root X", "expected /notice revoke-root ROOT [on DATE]"),
    ],
)
def test_malformed_commands_say_what_is_wrong(line: str, error: str) -> None:
    p = problem(line)
    assert error in p.error
    assert p.line == line
    assert p.usage and all(u.startswith("/") for u in p.usage)


def test_unknown_command_lists_every_valid_form() -> None:
    assert problem("/requets x").usage == tuple(c.usage for c in COMMANDS)


def test_a_malformed_request_lists_the_request_forms() -> None:
    assert problem("/request").usage == tuple(c.usage for c in COMMANDS if c.name == "request")


def test_an_overlong_line_is_a_problem() -> None:
    p = problem("/note " + "x" * 5000)
    assert "longer than" in p.error
    assert len(p.line) < 2100


# ---------------------------------------------------------------- dates and durations


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        # winter: Berlin is UTC+1
        ("2026-12-05", BERLIN, datetime(2026, 12, 5, 22, 59, 59, tzinfo=UTC)),
        # summer: Berlin is UTC+2
        ("2026-07-01", BERLIN, datetime(2026, 7, 1, 21, 59, 59, tzinfo=UTC)),
        ("2026-12-05", UTC_TZ, datetime(2026, 12, 5, 23, 59, 59, tzinfo=UTC)),
        # the day the clocks go back is still 23:59:59 local
        ("2026-10-25", BERLIN, datetime(2026, 10, 25, 22, 59, 59, tzinfo=UTC)),
        ("2026-12-05T12:00:00Z", BERLIN, datetime(2026, 12, 5, 12, tzinfo=UTC)),
        ("2026-12-05t12:00z", BERLIN, datetime(2026, 12, 5, 12, tzinfo=UTC)),
        ("2026-12-05T12:00+05:30", BERLIN, datetime(2026, 12, 5, 6, 30, tzinfo=UTC)),
        ("2026-12-05T12:00:00-0500", UTC_TZ, datetime(2026, 12, 5, 17, tzinfo=UTC)),
        # an ISO time without offset is a wall time in the configured zone
        ("2026-12-05T12:00", BERLIN, datetime(2026, 12, 5, 11, tzinfo=UTC)),
        ("2026-12-05 12:00:30", UTC_TZ, datetime(2026, 12, 5, 12, 0, 30, tzinfo=UTC)),
    ],
)
def test_parse_due(text: str, tz: ZoneInfo, expected: datetime) -> None:
    due = parse_due(text, tz)
    assert due == expected
    assert due.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    ["2026-13-45", "2026-02-30", "20261205", "5 Dec 2026", "tomorrow", "", "2026-12-05T25:00",
     "0001-01-01T00:00+01:00", "9999-12-31T23:59:59-05:00", "2026-12-05T12:00+99:00"],
)
def test_parse_due_refuses(text: str) -> None:
    with pytest.raises(CommandError, match="is not a date"):
        parse_due(text, BERLIN)


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-7d", "7d-", "1.5d", "7 fortnights",
                                  "99999999d", "1m", "0h", "0d0h", "1d" * 40])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(CommandError):
        parse_duration(text)


def test_duration_limits_are_inclusive() -> None:
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration(f"{MAX_REPORT_INTERVAL.days}d") == MAX_REPORT_INTERVAL


# ---------------------------------------------------------------- never raises


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_commands_never_raises(body: str) -> None:
    for result in parse_commands(body, BERLIN):
        assert isinstance(result, Command | CommandProblem)


_ARG = st.sampled_from(["due", "every", "on", "2026-12-05", "7d", "9999-12-31", ":", "x",
                        "certificate-list", "reports", "final-report", "info", "revoke-root",
                        "0001-01-01T00:00+14:00", '"', "99999w"])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([c.name for c in COMMANDS] + ["requets"]), st.lists(_ARG, max_size=6))
def test_command_shaped_lines_never_raise(name: str, args: list[str]) -> None:
    (result,) = parse_commands(f"/{name} {' '.join(args)}", UTC_TZ)
    assert isinstance(result, Command | CommandProblem)
    if isinstance(result, Command) and result.due is not None:
        assert result.due.utcoffset() == timedelta(0)
