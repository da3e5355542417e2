"""Bounce parsing: every corpus DSN, built reports, VERP, address validation, bounds, fuzzing."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.parse.bounces import (
    MAX_RECIPIENTS,
    BounceReport,
    addr_spec,
    parse_bounce,
    verp_address,
    verp_token,
)
from bot.parse.mail.message import ParsedMessage, parse_message
from tests.corpus import corpus_file, corpus_files, shared_corpus


def _bounce(raw: bytes, envelope_to: tuple[str, ...] = ()) -> BounceReport | None:
    return parse_bounce(raw, parse_message(raw), envelope_to)


# --------------------------------------------------------------------------
# The corpus: recipients, status and original Message-ID per SOURCES.md
# --------------------------------------------------------------------------

# file -> (kind, [(address, action, status)], original Message-ID, reader)
EXPECTED: dict[str, tuple[str, list[tuple[str, str, str | None]], str | None, str]] = {
    "dsn/bounceparser-exchange-ndr-message-too-large.eml": (
        "failed", [("john.smith@sample.net", "failed", "5.2.3")],
        "<20120521184627.050AD154809F@admin1.example.co.uk>", "rfc3464"),
    "dsn/bounceparser-iis-multiple-bounce.eml": (
        "failed", [(f"bounced{i}@example.net", "failed", "5.0.0") for i in range(1, 5)],
        "<CNISERVERTrpwACkWHZ00000098@smtp.example.com>", "rfc3464"),
    "dsn/flanker-office365-ndr.eml": (
        "failed", [("noname@example.com", "failed", "5.1.10")],
        "<20171013111011.20866.254C2F3A4D7AA526@ninomail.com>", "rfc3464"),
    # No Status field: the class comes from the diagnostic's "500".
    "dsn/mimekit-1996-sprynet-delivery-status.eml": (
        "failed", [("newsletter-request@imusic.com", "failed", "5.0.0")],
        "<31FC7EB4.41C6@netscape.com>", "rfc3464"),
    "dsn/mimekit-disposition-notification.eml": (
        "disposition", [("joe_recipient@example.com", "displayed", None)],
        "<199509192301.23456@example.org>", "rfc8098"),
    "dsn/mimekit-exim-delivery-status.eml": (
        "failed", [("source@domain.com", "failed", "5.0.0")], None, "rfc3464"),
    # The per-recipient fields arrive base64-encoded inside the report part.
    "dsn/mimekit-postfix-bounce-via-o365.eml": (
        "failed", [("netec.test@netecgc.com", "failed", "5.1.1")],
        "<44565655.JitbitHelpdesk.13439.691a0afc-a0a0-457c-8208-f20b7c4a4cb1@jitbit.com>",
        "rfc3464"),
    "dsn/sisimai-lhost-amazonses-01.eml": (
        "failed", [("shironeko@example.co.jp", "failed", "5.0.0")],
        "<000001321defbd2a-788e31c8-2be1-422f-a8d4-cf7765cc9ed7-000000@email.amazonses.com>",
        "rfc3464"),
    "dsn/sisimai-lhost-exchange2003-01.eml": (
        "failed", [("kijitora@example.jp", "failed", None)], None, "exchange-text"),
    "dsn/sisimai-lhost-exim-01.eml": (
        "failed", [("kijitora@example.ed.jp", "failed", "5.7.0")],
        "<E1P1ce6-000Egt-GZ@e1.example.org>", "exim-text"),
    "dsn/sisimai-lhost-gmail-01.eml": (
        "failed", [("userunknown@example.jp", "failed", "5.1.1")],
        "<D992C2C3-F175-4C4D-97E2-53A90E4E5BF5@gmail.com>", "gmail-text"),
    # The report part is lost to a broken boundary: Office 365's human text is read instead.
    "dsn/sisimai-lhost-office365-01.eml": (
        "failed", [("kijitora@example.com", "failed", "5.1.10")],
        "<FFFFFFFF.EEEEEEEE@example.ed.jp>", "exchange-text"),
    "dsn/sisimai-lhost-postfix-01.eml": (
        "failed", [("r@p351355.pool.example.ne.jp", "failed", "5.1.1")], None, "rfc3464"),
    "dsn/sisimai-lhost-qmail-01.eml": (
        "failed", [("kijitora@example.ne.jp", "failed", "5.5.0")],
        "<000000000.9999999999999.JavaMail.postmaster@mailhub>", "qmail-text"),
    "dsn/sisimai-lhost-sendmail-01.eml": (
        "failed", [("userunknown@bouncehammer.jp", "failed", "5.1.1")],
        "<E1C50F1B-1C83-4820-BC36-AC6FBFBE8568@example.org>", "rfc3464"),
    "dsn/sisimai-lhost-sendmail-29.eml": (
        "delayed",
        [("this-local-part-does-not-exist-on-the-system@y-mobile.ne.jp", "delayed", "4.5.0")],
        "<54341A75-5EF4-4F06-9C5D-56D36A9283FC@example.jp>", "rfc3464"),
    "dsn/sisimai-rfc3464-07.eml": (
        "delayed", [("kijitora@example.net", "delayed", "4.4.0")],
        "<000000000000000@list.example.jp>", "rfc3464"),
    # The report part's boundary is indented, so its fields are found in the text.
    "dsn/sisimai-rfc3464-35.eml": (
        "failed",
        [("kijitora@nyaan.example.com", "failed", "5.0.0"),
         ("sabatora@cat.example.net", "delayed", "4.0.0"),
         ("mikeneko@neko.example.or.jp", "failed", "5.0.0")],
        None, "rfc3464-text"),
    # Action: failed with a 4.x.x status: the mail is lost, the address may recover.
    "dsn/sisimai-rhost-gsuite-15-gmail-modern.eml": (
        "failed", [("maildebug@example.jpn", "failed", "4.0.0")],
        "<CAByYQsGge+O7Z6G5c06TEcL1SN7zSeON58xdcyueZqK1LWMjxw@mail.gmail.com>", "rfc3464"),
    # An Exim bounce carrying Auto-Submitted: auto-replied: still a bounce.
    "autoreply/bounceparser-non-autoreply-exim-bounce.eml": (
        "failed", [("hbsdpphvfex@blackwebportal.com", "failed", "5.0.0")],
        "<200607250935.k6P9Zdos034419@bacchus.thegestalt.org>", "exim-text"),
    # Challenge-response dressed as a DSN: 4.7.0 and no recipient Action -> delayed, not failed.
    "autoreply/bounceparser-boxbe-challenge-response.eml": (
        "delayed", [("bloggs.fred@googlemail.com", "delayed", "4.7.0")],
        "<20101115133429.70E0916581C3@server4.example.co.uk>", "rfc3464"),
    "malformed/flanker-bounce-delayed-broken.eml": (
        "failed", [("demo@example.com", "failed", "4.2.2")], None, "rfc3464"),
    "malformed/mailparser-mail_malformed_2-mailsite-dsn.eml": (
        "failed", [("abh@netpar.com.br", "failed", "4.2.2")],
        "<004801d1fc84$01c934ac$b247f0b7$@infospacemail.com>", "rfc3464"),
    "malformed/mimekit-delivery-status-multiple-blank-lines.eml": (
        "failed", [("orig_recip@customer.com", "failed", "5.5.0")], None, "rfc3464"),
    # Bounces by their headers whose text names no recipient we can trust.
    "malformed/enmime-multipart-without-boundary.eml": ("failed", [], None, "none"),
    "malformed/flanker-bounce-broken-mime.eml": ("failed", [], None, "none"),
}

NOT_BOUNCES = {
    "dsn/sisimai-arf-01.eml",  # an abuse report
    *(f"autoreply/{name}" for name in (
        "bounceparser-aol-vacation.eml",
        "bounceparser-autoreply-precedence-bulk.eml",
        "bounceparser-polish-autoreply.eml",
        "sisimai-rfc3834-01.eml",
        "sisimai-rfc3834-02-exchange-automatic-reply.eml",
        "sisimai-rfc3834-03-icloud-vacation.eml",
        "sisimai-rfc3834-04-exchange-windows1252.eml",
        "sisimai-rfc3834-05-minimal.eml",
        "sisimai-rfc3834-06-autorespons-html.eml",
    )),
}


@shared_corpus
@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_corpus_bounce(relative: str) -> None:
    kind, recipients, original, source = EXPECTED[relative]
    report = _bounce(corpus_file(relative).read_bytes())
    assert report is not None
    assert report.kind == kind
    assert [(r.address, r.action, r.status) for r in report.recipients] == recipients
    assert report.original_message_id == original
    assert report.source == source
    assert report.reason and "\n" not in report.reason
    for recipient in report.recipients:
        assert addr_spec(recipient.address) == recipient.address


@shared_corpus
@pytest.mark.parametrize("relative", sorted(NOT_BOUNCES))
def test_corpus_not_a_bounce(relative: str) -> None:
    assert _bounce(corpus_file(relative).read_bytes()) is None


@shared_corpus
def test_every_corpus_dsn_and_autoreply_file_has_an_expectation() -> None:
    names = {f"{folder}/{p.name}" for folder in ("dsn", "autoreply") for p in corpus_files(folder)}
    if not names:
        pytest.skip("corpus absent")
    assert names == {k for k in EXPECTED if not k.startswith("malformed/")} | NOT_BOUNCES


@shared_corpus
def test_corpus_diagnostics_and_reasons() -> None:
    report = _bounce(corpus_file("dsn/sisimai-lhost-sendmail-01.eml").read_bytes())
    assert report is not None
    diagnostic = "550 5.1.1 <userunknown@bouncehammer.jp>... User Unknown"
    assert report.recipients[0].diagnostic == diagnostic
    assert report.reason == (
        "550 5.1.1 <userunknown@bouncehammer.jp>... User Unknown (userunknown@bouncehammer.jp)"
    )
    multi = _bounce(corpus_file("dsn/bounceparser-iis-multiple-bounce.eml").read_bytes())
    assert multi is not None and multi.reason.endswith("(bounced1@example.net); and 3 more")


@shared_corpus
def test_corpus_temporary_and_permanent_are_told_apart() -> None:
    delayed = _bounce(corpus_file("dsn/sisimai-lhost-sendmail-29.eml").read_bytes())
    assert delayed is not None and delayed.kind == "delayed" and not delayed.permanent
    assert delayed.recipients[0].temporary and not delayed.recipients[0].permanent

    hard = _bounce(corpus_file("dsn/sisimai-lhost-postfix-01.eml").read_bytes())
    assert hard is not None and hard.permanent
    assert hard.recipients[0].permanent and not hard.recipients[0].temporary
    assert hard.recipients[0].original_address == "kijitora@example.org"

    gave_up = _bounce(corpus_file("dsn/sisimai-rhost-gsuite-15-gmail-modern.eml").read_bytes())
    assert gave_up is not None and gave_up.kind == "failed" and gave_up.permanent
    assert gave_up.recipients[0].temporary  # 4.0.0: the address itself may work later

    mixed = _bounce(corpus_file("dsn/sisimai-rfc3464-35.eml").read_bytes())
    assert mixed is not None
    assert [r.permanent for r in mixed.recipients] == [True, False, True]


@shared_corpus
def test_corpus_plain_is_never_a_bounce() -> None:
    files = corpus_files("plain")
    if not files:
        pytest.skip("corpus absent")
    for path in files:
        assert _bounce(path.read_bytes()) is None, path.name


@shared_corpus
def test_corpus_malformed_no_crash_and_no_false_bounce() -> None:
    files = corpus_files("malformed")
    if not files:
        pytest.skip("corpus absent")
    for path in files:
        report = _bounce(path.read_bytes())
        assert (report is not None) == (f"malformed/{path.name}" in EXPECTED), path.name


# --------------------------------------------------------------------------
# Built reports
# --------------------------------------------------------------------------


def _dsn(
    recipient_blocks: str,
    *,
    envelope_to: str = "rootnotify+bounce-7f3a@program.test",
    returned: str = "Message-ID: <rn.7f3a@program.test>\r\nSubject: [INC-2026-0001] ack\r\n",
    report_type: str = "delivery-status",
) -> bytes:
    return (
        "Return-Path: <>\r\n"
        "From: MAILER-DAEMON@mx.exampleca.test\r\n"
        f"To: {envelope_to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce.1@mx.exampleca.test>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour mail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.exampleca.test\r\n\r\n"
        f"{recipient_blocks}\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n"
        "--B--\r\n"
    ).encode()


OK_BLOCK = (
    "Final-Recipient: rfc822; Incidents@ExampleCA.test\r\n"
    "Action: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
)


def test_built_dsn() -> None:
    report = _bounce(_dsn(OK_BLOCK))
    assert report is not None
    assert report.kind == "failed" and report.permanent
    assert report.recipients[0].address == "incidents@exampleca.test"  # lower-cased
    assert report.reason == "550 5.1.1 user unknown (incidents@exampleca.test)"
    assert report.original_message_id == "<rn.7f3a@program.test>"
    assert report.verp_token == "7f3a"  # from the To header when the envelope is unknown


def test_verp_token_from_the_envelope_first() -> None:
    raw = _dsn(OK_BLOCK, envelope_to="someone@program.test")
    unknown = _bounce(raw)
    assert unknown is not None and unknown.verp_token is None
    report = _bounce(raw, envelope_to=("<ROOTNOTIFY+BOUNCE-AB12@program.test>",))
    assert report is not None and report.verp_token == "ab12"


@pytest.mark.parametrize(
    "address",
    [
        "<td>evil@example.com</td>",
        "evil@example.com</td>",
        '<a href="mailto:x@example.com">x@example.com</a>',
        "two words@example.com",
        "a@b@example.com",
        "user@localhost",
        "user@-bad-.example",
        ".dot@example.com",
        "dot..dot@example.com",
        '"quoted"@example.com',
        "x400; c=us;a= ;p=x;o=y;s=z",
        "ünïcode@example.com",
        ("a" * 65) + "@example.com",
        "a@" + ("b" * 250) + ".com",
    ],
)
def test_report_addresses_are_validated(address: str) -> None:
    assert addr_spec(address) is None
    block = f"Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    report = _bounce(_dsn(block))
    assert report is not None and report.recipients == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@example.com", "a@example.com"),
        ("<A.B+tag@Example.COM>", "a.b+tag@example.com"),
        ("rfc822;x@example.org", "x@example.org"),
        ("RFC822; <y@example.org>", "y@example.org"),
        ("z@[192.0.2.1]", "z@[192.0.2.1]"),
    ],
)
def test_addr_spec_accepts(text: str, expected: str) -> None:
    assert addr_spec(text) == expected


def test_delayed_dsn_without_action_takes_the_status_class() -> None:
    report = _bounce(_dsn("Final-Recipient: rfc822; a@exampleca.test\r\nStatus: 4.2.2\r\n"))
    assert report is not None and report.kind == "delayed" and not report.permanent
    assert report.recipients[0].action == "delayed" and report.recipients[0].temporary


def test_success_dsn_is_reported_as_delivered() -> None:
    block = "Final-Recipient: rfc822; a@exampleca.test\r\nAction: delivered\r\nStatus: 2.0.0\r\n"
    report = _bounce(_dsn(block))
    assert report is not None and report.kind == "delivered" and not report.permanent


def test_recipients_are_capped() -> None:
    blocks = "\r\n".join(
        f"Final-Recipient: rfc822; r{i}@exampleca.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        for i in range(MAX_RECIPIENTS * 3)
    )
    report = _bounce(_dsn(blocks))
    assert report is not None and len(report.recipients) == MAX_RECIPIENTS


def test_huge_bounce_is_bounded() -> None:
    raw = _dsn(OK_BLOCK) + b"X" * (20 * 1024 * 1024)
    started = time.perf_counter()
    report = _bounce(raw)
    assert report is not None and report.recipients[0].status == "5.1.1"
    assert time.perf_counter() - started < 10  # generous: the machines are noisy and shared


def test_a_forwarded_bounce_is_not_a_bounce() -> None:
    # A CA forwards a bounce to us as an attachment: a person's mail, with a question.
    inner = _dsn(OK_BLOCK).decode()
    raw = (
        "From: alice@exampleca.test\r\nTo: rootnotify@program.test\r\nSubject: Fwd: bounce\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="M"\r\n\r\n'
        "--M\r\nContent-Type: text/plain\r\n\r\nWhy did this bounce?\r\n"
        f"--M\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--M--\r\n"
    ).encode()
    assert _bounce(raw) is None


def test_a_persons_mail_is_not_a_bounce() -> None:
    raw = (
        b"From: alice@exampleca.test\r\nTo: rootnotify@program.test\r\n"
        b"Subject: Undeliverable certificates\r\n\r\n"
        b"Final-Recipient: rfc822; a@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    )
    assert _bounce(raw) is None


# --------------------------------------------------------------------------
# VERP
# --------------------------------------------------------------------------


def test_verp_round_trip() -> None:
    address = verp_address("rootnotify@program.test", "42")
    assert address == "rootnotify+bounce-42@program.test"
    assert verp_token(address) == "42"
    assert verp_token("<Rootnotify+Bounce-A1B2@Program.Test>") == "a1b2"


@pytest.mark.parametrize(
    "address",
    ["rootnotify@program.test", "rootnotify+other-1@program.test", "+bounce-1@program.test",
     "a+b+bounce-1@program.test", "rootnotify+bounce-@program.test", "not an address"],
)
def test_verp_token_refuses_other_addresses(address: str) -> None:
    assert verp_token(address) is None


@pytest.mark.parametrize(
    ("base", "token"),
    [("rootnotify@program.test", ""), ("rootnotify@program.test", "a b"),
     ("rootnotify@program.test", "x" * 65), ("root+x@program.test", "1"), ("nobody", "1")],
)
def test_verp_address_refuses_bad_input(base: str, token: str) -> None:
    with pytest.raises(ValueError):
        verp_address(base, token)


# --------------------------------------------------------------------------
# Nothing a sender writes makes parse_bounce raise
# --------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n",
        b"Content-Type: message/delivery-status\r\n", b"--B\r\n", b"--B--\r\n", b"\r\n\r\n",
        b"Final-Recipient: rfc822; <a@b.example>\r\n", b"Final-Recipient: rfc822; <td>x@y</td>\r\n",
        b"Action: failed\r\n", b"Status: 4.4.7\r\n", b"Diagnostic-Code: smtp; 550 no\r\n",
        b"Content-Transfer-Encoding: base64\r\n", b"RmluYWwtUmVjaXBpZW50OiByZmM4MjI7IGFAYi5j\r\n",
        b"The following address(es) failed:\r\n", b"  x@y.example\r\n", b"Message-ID: <a@b>\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/plain; charset=unicode-1-1-utf-7\r\n",
        b"(((((", b"=?utf-8?b?////?=", b"\xff\xfe\x00",
    ]
)


def _blank(subject: str = "", headers: list[tuple[str, str]] | None = None) -> ParsedMessage:
    return ParsedMessage(
        message_id=None, from_address=None, from_display="", to=[], cc=[], reply_to=[],
        subject=subject, date=None, in_reply_to=[], references=[], headers=headers or [],
        text_plain="", text_html="",
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(_FRAGMENTS | st.binary(max_size=200), max_size=40),
    headers=st.lists(
        st.tuples(
            st.sampled_from(["X-Failed-Recipients", "Subject", "From", "To", "Delivered-To",
                             "Content-Type", "In-Reply-To"]) | st.text(max_size=20),
            st.text(max_size=200),
        ),
        max_size=8,
    ),
    envelope_to=st.lists(st.text(max_size=80), max_size=3),
)
def test_parse_bounce_never_raises(
    chunks: list[bytes], headers: list[tuple[str, str]], envelope_to: list[str]
) -> None:
    raw = b"".join(chunks)
    report = parse_bounce(raw, _blank("Undeliverable", headers), envelope_to)
    if report is not None:
        assert report.kind in (
            "failed", "delayed", "delivered", "relayed", "expanded", "disposition"
        )
        for recipient in report.recipients:
            assert addr_spec(recipient.address) == recipient.address
        assert "\n" not in report.reason


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=4000))
def test_parse_bounce_on_arbitrary_bytes(raw: bytes) -> None:
    report = parse_bounce(raw, _blank())
    assert report is None or all(addr_spec(r.address) for r in report.recipients)
    token = verp_token(raw.decode("latin-1"))
    assert token is None or token == token.lower()
