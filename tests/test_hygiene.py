"""The no-loop / no-backscatter rules: corpus mails, one built mail per rule, and fuzzing."""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.parse.automatic import LOOP_HEADER, RULES, AutomaticVerdict, is_bounce, judge, rules_table
from bot.parse.mail.message import ParsedMessage, parse_message
from tests.corpus import corpus_file, corpus_files, shared_corpus

MARKER = "rn-test-3f9a1c"


def _judge(raw: bytes, envelope_from: str | None = None) -> AutomaticVerdict:
    return judge(parse_message(raw), envelope_from, loop_marker=MARKER)


def _mail(headers: dict[str, str] | None = None, body: str = "Hello,\n\nsee the attached form.\n",
          subject: str = "Security incident notification") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@exampleca.test>"
    msg["To"] = "rootnotify@program.test"
    msg["Subject"] = subject
    msg["Message-ID"] = "<1@exampleca.test>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


# --------------------------------------------------------------------------
# The corpus: what SOURCES.md says a correct parser finds
# --------------------------------------------------------------------------

AUTOREPLY = {
    "bounceparser-aol-vacation.eml": ("auto-reply", "auto-submitted"),
    "bounceparser-autoreply-precedence-bulk.eml": ("auto-reply", "precedence-bulk"),
    # A multipart/report delivery-status with Action: failed: never answered, read as a DSN.
    "bounceparser-boxbe-challenge-response.eml": ("bounce", "dsn-report"),
    # An Exim bounce that also says Auto-Submitted: auto-replied is a bounce.
    "bounceparser-non-autoreply-exim-bounce.eml": ("bounce", "failed-recipients"),
    "bounceparser-polish-autoreply.eml": ("auto-reply", "precedence-bulk"),
    "sisimai-rfc3834-01.eml": ("auto-reply", "auto-submitted"),
    "sisimai-rfc3834-02-exchange-automatic-reply.eml": ("auto-reply", "auto-response-suppress"),
    "sisimai-rfc3834-03-icloud-vacation.eml": ("auto-reply", "apple-vacation"),
    "sisimai-rfc3834-04-exchange-windows1252.eml": ("auto-reply", "auto-response-suppress"),
    "sisimai-rfc3834-05-minimal.eml": ("auto-reply", "auto-submitted"),
    "sisimai-rfc3834-06-autorespons-html.eml": ("auto-reply", "auto-submitted"),
}

DSN = {
    "bounceparser-exchange-ndr-message-too-large.eml": ("bounce", "dsn-report"),
    "bounceparser-iis-multiple-bounce.eml": ("bounce", "dsn-report"),
    "flanker-office365-ndr.eml": ("bounce", "dsn-report"),
    "mimekit-1996-sprynet-delivery-status.eml": ("bounce", "dsn-report"),
    "mimekit-disposition-notification.eml": ("auto-reply", "mdn"),  # an MDN, not a bounce
    "mimekit-exim-delivery-status.eml": ("bounce", "dsn-report"),
    "mimekit-postfix-bounce-via-o365.eml": ("bounce", "dsn-report"),
    "sisimai-arf-01.eml": ("system-sender", "other-report"),  # abuse report, not a bounce
    "sisimai-lhost-amazonses-01.eml": ("bounce", "dsn-report"),
    "sisimai-lhost-exchange2003-01.eml": ("bounce", "bounce-subject"),
    "sisimai-lhost-exim-01.eml": ("bounce", "failed-recipients"),
    "sisimai-lhost-gmail-01.eml": ("bounce", "failed-recipients"),
    "sisimai-lhost-office365-01.eml": ("bounce", "dsn-report"),
    "sisimai-lhost-postfix-01.eml": ("bounce", "dsn-report"),
    "sisimai-lhost-qmail-01.eml": ("bounce", "bounce-subject"),
    "sisimai-lhost-sendmail-01.eml": ("bounce", "dsn-report"),
    "sisimai-lhost-sendmail-29.eml": ("bounce", "dsn-report"),
    "sisimai-rfc3464-07.eml": ("bounce", "dsn-report"),
    "sisimai-rfc3464-35.eml": ("bounce", "dsn-report"),
    "sisimai-rhost-gsuite-15-gmail-modern.eml": ("bounce", "dsn-report"),
}

# Bounces that live in malformed/ because their MIME is broken.
MALFORMED_BOUNCES = {
    "enmime-multipart-without-boundary.eml",
    "flanker-bounce-broken-mime.eml",
    "flanker-bounce-delayed-broken.eml",
    "mailparser-mail_malformed_2-mailsite-dsn.eml",
    "mimekit-delivery-status-multiple-blank-lines.eml",
}


@shared_corpus
@pytest.mark.parametrize("name", sorted(AUTOREPLY))
def test_corpus_autoreply(name: str) -> None:
    verdict = _judge(corpus_file(f"autoreply/{name}").read_bytes())
    assert (verdict.kind, verdict.rule) == AUTOREPLY[name], verdict.reason


@shared_corpus
@pytest.mark.parametrize("name", sorted(DSN))
def test_corpus_dsn(name: str) -> None:
    raw = corpus_file(f"dsn/{name}").read_bytes()
    verdict = _judge(raw)
    assert (verdict.kind, verdict.rule) == DSN[name], verdict.reason
    assert is_bounce(parse_message(raw)) == (DSN[name][0] == "bounce")


@shared_corpus
def test_every_corpus_autoreply_and_dsn_file_has_an_expectation() -> None:
    names = {p.name for p in corpus_files("autoreply")} | {p.name for p in corpus_files("dsn")}
    if not names:
        pytest.skip("corpus absent")
    assert names == set(AUTOREPLY) | set(DSN)


@shared_corpus
def test_corpus_plain_is_written_by_people() -> None:
    files = corpus_files("plain")
    if not files:
        pytest.skip("corpus absent")
    for path in files:
        message = parse_message(path.read_bytes())
        verdict = judge(message, None, loop_marker=MARKER)
        assert not is_bounce(message), path.name
        if path.name == "enmime-mandrill-papertrail-notification.eml":
            # A Mandrill notification: its return path is a VERP bounce address.
            assert (verdict.kind, verdict.rule) == ("system-sender", "system-sender")
        else:
            assert verdict.kind is None, (path.name, verdict)


@shared_corpus
def test_corpus_malformed_no_crash_and_no_false_bounce() -> None:
    files = corpus_files("malformed")
    if not files:
        pytest.skip("corpus absent")
    for path in files:
        message = parse_message(path.read_bytes())
        verdict = judge(message, None, loop_marker=MARKER)
        assert is_bounce(message) == (path.name in MALFORMED_BOUNCES), path.name
        assert (verdict.kind == "bounce") == (path.name in MALFORMED_BOUNCES), path.name


# --------------------------------------------------------------------------
# One built mail per rule
# --------------------------------------------------------------------------


def test_a_persons_mail_may_be_answered() -> None:
    verdict = _judge(_mail(), envelope_from="alice@exampleca.test")
    assert verdict == AutomaticVerdict(None, None, None)
    assert not verdict.automatic


@pytest.mark.parametrize("value", ["no", "No", "no (a person wrote this)", " no ; x=y"])
def test_auto_submitted_no_is_a_person(value: str) -> None:
    assert _judge(_mail({"Auto-Submitted": value})).kind is None


@pytest.mark.parametrize(
    "value",
    [
        "auto-replied",
        "auto-replied; owner-email=\"bob@exampleca.test\"",
        "Auto-Generated (failure)",
        "auto-notified",
        "junk-we-do-not-know",
    ],
)
def test_auto_submitted_other_than_no(value: str) -> None:
    verdict = _judge(_mail({"Auto-Submitted": value}))
    assert (verdict.kind, verdict.rule) == ("auto-reply", "auto-submitted")
    assert verdict.reason is not None and "RFC 3834" in verdict.reason


@pytest.mark.parametrize(
    ("value", "kind", "rule"),
    [
        ("bulk", "auto-reply", "precedence-bulk"),
        ("junk", "auto-reply", "precedence-bulk"),
        ("BULK", "auto-reply", "precedence-bulk"),
        ("list", "list", "precedence-list"),
        ("first-class", None, None),
    ],
)
def test_precedence(value: str, kind: str | None, rule: str | None) -> None:
    verdict = _judge(_mail({"Precedence": value}))
    assert (verdict.kind, verdict.rule) == (kind, rule)


@pytest.mark.parametrize("name", ["X-Autoreply", "X-Autorespond", "X-Autoresponder"])
def test_autoresponder_headers(name: str) -> None:
    assert _judge(_mail({name: "yes"})).rule == "x-autoreply"


@pytest.mark.parametrize(
    "name", ["List-Id", "List-Unsubscribe", "List-Post", "List-Help", "Mailing-List"]
)
def test_list_headers(name: str) -> None:
    verdict = _judge(_mail({name: "<incidents.lists.example>"}))
    assert (verdict.kind, verdict.rule) == ("list", "list-headers")


@pytest.mark.parametrize(
    ("value", "suppressed"),
    [
        ("All", True),
        ("AutoReply", True),
        ("OOF", True),
        ("DR, OOF", True),
        ("OOF, AutoReply, DR, NDR, RN, NRN", True),
        # Delivery and read reports only: we send neither, so we may answer.
        ("DR", False),
        ("NDR", False),
        ("DR, NDR, RN, NRN", False),
        ("None", False),
    ],
)
def test_x_auto_response_suppress(value: str, suppressed: bool) -> None:
    verdict = _judge(_mail({"X-Auto-Response-Suppress": value}))
    assert (verdict.rule == "auto-response-suppress") is suppressed
    assert (verdict.kind is not None) is suppressed


@pytest.mark.parametrize(
    "name", ["X-MS-Exchange-Inbox-Rules-Loop", "X-MS-Exchange-Generated-Message-Source"]
)
def test_exchange_generated(name: str) -> None:
    verdict = _judge(_mail({name: "Mailbox Rules Agent"}))
    assert (verdict.kind, verdict.rule) == ("auto-reply", "exchange-inbox-rule")


def test_rt_loop_prevention_but_not_generic_x_loop() -> None:
    assert _judge(_mail({"RT-Loop-Prevention": "rt.exampleca.test"})).rule == "rt-loop"
    # Our own procmail or sieve forward may add X-Loop to every mail.
    assert _judge(_mail({"X-Loop": "rootnotify@program.test"})).kind is None


VACATION_BODY = "I am out of the office until Monday with limited access to email.\n"


def test_vacation_subject_alone_is_not_enough() -> None:
    assert _judge(_mail(subject="Out of Office: [INC-2026-0001] update")).kind is None


def test_vacation_body_alone_is_not_enough() -> None:
    assert _judge(_mail(body=VACATION_BODY)).kind is None


def test_vacation_subject_and_body_together() -> None:
    verdict = _judge(_mail(subject="Automatic reply: [INC-2026-0001]", body=VACATION_BODY))
    assert (verdict.kind, verdict.rule) == ("auto-reply", "vacation-text")


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.exampleca.test",
        "postmaster@exampleca.test",
        "noreply@exampleca.test",
        "no-reply@exampleca.test",
        "no_reply@exampleca.test",
        "donotreply@exampleca.test",
        "do-not-reply@exampleca.test",
        "bounce-123@mailer.exampleca.test",
        "bounces+42-x@sendgrid.example",
        "incidents-bounces@lists.exampleca.test",
        "owner-incidents@lists.exampleca.test",
    ],
)
def test_system_senders(sender: str) -> None:
    msg = EmailMessage()
    msg["From"] = sender
    msg["Subject"] = "hello"
    msg.set_content("text")
    verdict = _judge(msg.as_bytes(), envelope_from="ok@exampleca.test")
    assert (verdict.kind, verdict.rule) == ("system-sender", "system-sender")


@pytest.mark.parametrize(
    "sender", ["noreen@exampleca.test", "post@exampleca.test", "bob@noreply.test"]
)
def test_people_whose_names_look_like_robots(sender: str) -> None:
    msg = EmailMessage()
    msg["From"] = sender
    msg["Subject"] = "hello"
    msg.set_content("text")
    assert _judge(msg.as_bytes(), envelope_from=sender).kind is None


def test_system_envelope_sender_and_sender_header() -> None:
    assert _judge(_mail(), envelope_from="bounce-77@esp.example").rule == "system-sender"
    assert _judge(_mail({"Sender": "noreply@exampleca.test"})).rule == "system-sender"


@pytest.mark.parametrize("envelope", ["", "<>", " <> "])
def test_null_envelope_sender(envelope: str) -> None:
    verdict = _judge(_mail(), envelope_from=envelope)
    assert (verdict.kind, verdict.rule) == ("bounce", "null-return-path")


def test_null_return_path_header_stands_in_for_the_envelope() -> None:
    raw = b"Return-Path: <>\r\n" + _mail()
    assert _judge(raw, envelope_from=None).rule == "null-return-path"
    # A known envelope wins over the header.
    assert _judge(raw, envelope_from="alice@exampleca.test").kind is None


def test_bounce_subject_needs_a_second_signal() -> None:
    # A person may well write such a subject (or forward one).
    assert _judge(_mail(subject="Undeliverable: your last mail")).kind is None
    msg = EmailMessage()
    msg["From"] = "Mail Delivery System <MAILER-DAEMON@mx.exampleca.test>"
    msg["Subject"] = "Mail delivery failed: returning message to sender"
    msg.set_content("This message was created automatically by mail delivery software.")
    verdict = _judge(msg.as_bytes())
    assert (verdict.kind, verdict.rule) == ("bounce", "bounce-subject")
    assert is_bounce(parse_message(msg.as_bytes()))


def _report(report_type: str, part_type: str) -> bytes:
    return (
        "From: reports@mx.exampleca.test\r\n"
        "Subject: report\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nhuman text\r\n"
        f"--b\r\nContent-Type: {part_type}\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        "Final-Recipient: rfc822; a@exampleca.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--b--\r\n"
    ).encode()


def test_multipart_report_kinds() -> None:
    dsn = _judge(_report("delivery-status", "message/delivery-status"))
    assert (dsn.kind, dsn.rule) == ("bounce", "dsn-report")
    mdn = _judge(_report("disposition-notification", "message/disposition-notification"))
    assert (mdn.kind, mdn.rule) == ("auto-reply", "mdn")
    arf = _judge(_report("feedback-report", "message/feedback-report"))
    assert (arf.kind, arf.rule) == ("system-sender", "other-report")


def test_own_loop_marker_wins_over_everything() -> None:
    # Our own mail carries Auto-Submitted too; the verdict must name the loop.
    raw = _mail({LOOP_HEADER: MARKER, "Auto-Submitted": "auto-replied"})
    verdict = _judge(raw, envelope_from="")
    assert (verdict.kind, verdict.rule) == ("loop", "own-loop-marker")
    assert MARKER not in (verdict.reason or "")  # the marker is not shown to staff


def test_another_deployments_marker_is_a_loop_too() -> None:
    verdict = _judge(_mail({LOOP_HEADER: "someone-elses-marker"}))
    assert (verdict.kind, verdict.rule) == ("loop", "other-loop-marker")


def test_empty_loop_marker_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        judge(parse_message(_mail()), None, loop_marker=" ")


def test_the_table_reads_in_one_screen() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    table = rules_table()
    assert all(rule_id in table for rule_id in ids)
    assert all(rule.why and rule.ref for rule in RULES)
    assert len(table.splitlines()) == len(RULES) + 1


# --------------------------------------------------------------------------
# Nothing a sender writes makes judge raise
# --------------------------------------------------------------------------

_NAMES = st.sampled_from(
    [
        "Auto-Submitted", "Precedence", "X-Auto-Response-Suppress", "List-Id", "Content-Type",
        "Return-Path", "Sender", "From", "Subject", LOOP_HEADER, "X-Failed-Recipients",
        "X-Apple-Action", "X-Envelope-From",
    ]
) | st.text(min_size=0, max_size=30)
_VALUES = st.text(max_size=300) | st.sampled_from(
    ["<>", "(((((", "auto-replied; (x", "multipart/report; report-type=", "All, ,,", ""]
)


def _parsed(
    headers: list[tuple[str, str]], subject: str, body: str, sender: str | None
) -> ParsedMessage:
    return ParsedMessage(
        message_id=None, from_address=sender, from_display="", to=[], cc=[], reply_to=[],
        subject=subject, date=None, in_reply_to=[], references=[], headers=headers,
        text_plain=body, text_html="",
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=st.lists(st.tuples(_NAMES, _VALUES), max_size=12),
    subject=st.text(max_size=200),
    body=st.text(max_size=600),
    sender=st.none() | st.text(max_size=60),
    envelope=st.none() | st.text(max_size=60),
)
def test_judge_never_raises(
    headers: list[tuple[str, str]],
    subject: str,
    body: str,
    sender: str | None,
    envelope: str | None,
) -> None:
    message = _parsed(headers, subject, body, sender)
    verdict = judge(message, envelope, loop_marker=MARKER)
    assert verdict.kind in (None, "bounce", "auto-reply", "list", "loop", "system-sender")
    assert (verdict.kind is None) == (verdict.rule is None) == (verdict.reason is None)
    if verdict.reason is not None:
        assert not re.search(r"[\x00-\x1f\x7f]", verdict.reason)
    assert isinstance(is_bounce(message), bool)


def test_a_bare_delivery_status_mail_is_a_bounce() -> None:
    # Some MTAs send the report part alone, as the whole mail.
    raw = (b"From: postmaster@remote.test\r\nTo: rootnotify@program.test\r\n"
           b"Subject: failure notice\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: message/delivery-status\r\n\r\n"
           b"Reporting-MTA: dns; mx.remote.test\r\n\r\n"
           b"Final-Recipient: rfc822; gone@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\n")
    verdict = _judge(raw, envelope_from="")
    assert (verdict.kind, verdict.rule) == ("bounce", "dsn-bare"), verdict
