"""Our own corpus (tests/mailcorpus): each report, auto-reply and look-alike as a person reads it.

The expectations come from the table that wrote each mail
(tests/mailcorpus/make_mail_shapes.py), not from rootnotify's output: who
failed with which status, which of our mails came back, which header
family marks a mail automatic, and that mail a person wrote is answered.
"""

from __future__ import annotations

import pytest

from bot.parse.automatic import is_bounce, judge
from bot.parse.bounces import parse_bounce
from bot.parse.mail.message import parse_message
from tests.corpus import OWN_CORPUS, own_files
from tests.mailcorpus import make_mail_shapes as shapes

# Which of rootnotify's hygiene rules may name each header family.
FAMILY_RULES = {
    "auto-submitted": {"auto-submitted"},
    "x-autoreply": {"x-autoreply"},
    "precedence": {"precedence-bulk", "precedence-list"},
    "list": {"list-headers"},
    "vacation-subject": {"vacation-text", "auto-response-suppress"},
}


def _raw(folder: str, name: str) -> bytes:
    return (OWN_CORPUS / folder / name).read_bytes()


def test_the_committed_files_are_what_the_script_writes(tmp_path):
    written = shapes.write_all(tmp_path)
    for path in written:
        committed = OWN_CORPUS / path.relative_to(tmp_path)
        assert committed.read_bytes() == path.read_bytes(), f"rerun {shapes.__file__}: {path.name}"
    assert {p.name for f in ("dsn", "autoreply", "lookalike", "malformed")
            for p in own_files(f)} == {p.name for p in written}


def test_at_least_eight_permanent_failures_carry_the_returned_message_id():
    shapes_seen = {d.name.split("-")[0] for d in shapes.DSNS
                   if d.kind == "failed" and d.original_message_id}
    assert len([d for d in shapes.DSNS if d.kind == "failed" and d.original_message_id]) >= 8
    assert shapes_seen >= {"postfix", "exim", "exchange", "gmail"}


@pytest.mark.parametrize("case", shapes.DSNS, ids=lambda d: d.name)
def test_delivery_report_names_who_failed_how_and_which_mail(case):
    raw = _raw("dsn", case.name)
    report = parse_bounce(raw, parse_message(raw))
    assert report is not None
    assert report.kind == case.kind
    assert [(r.address, r.action, r.status) for r in report.recipients] == list(case.recipients)
    assert report.original_message_id == case.original_message_id
    assert is_bounce(parse_message(raw))
    assert judge(parse_message(raw), "", loop_marker="rn-own").kind == "bounce"


@pytest.mark.parametrize("case", shapes.AUTOS, ids=lambda a: a.name)
def test_automatic_reply_is_recognised_by_its_header_family(case):
    verdict = judge(parse_message(_raw("autoreply", case.name)), "incidents@exampleca.test",
                    loop_marker="rn-own")
    assert verdict.kind in ("auto-reply", "list"), verdict
    assert verdict.rule in FAMILY_RULES[case.family], verdict


@pytest.mark.parametrize("case", shapes.LOOKALIKES, ids=lambda a: a.name)
def test_mail_a_person_wrote_is_not_taken_for_automatic(case):
    verdict = judge(parse_message(_raw("lookalike", case.name)), "incidents@exampleca.test",
                    loop_marker="rn-own")
    assert verdict.kind is None, verdict


@pytest.mark.parametrize("name", sorted(shapes.MALFORMED))
def test_broken_mime_is_read_without_raising_and_is_no_bounce(name):
    raw = _raw("malformed", name)
    message = parse_message(raw)
    assert parse_bounce(raw, message) is None
    assert message.from_address in ("incidents@exampleca.test", None)
