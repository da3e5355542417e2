"""Write the corpus's text-shaped mails: delivery reports, auto-replies, look-alikes, broken MIME.

Run `python tests/mailcorpus/make_mail_shapes.py` to rewrite the .eml files
beside it; they are committed, so the tests need nothing but the repository.
Each shape is copied from what the real software writes (Postfix 3.x
bounce(8), Exim 4 both text and DSN, Exchange/Office 365 NDRs, Gmail's
Mail Delivery Subsystem, old sendmail/Gmail text bounces, RFC 3834
responders, Outlook/Apple vacation replies) and filled from the table below,
never produced by rootnotify's own code. `CASES` is the truth the tests
check against: what a reader of each mail finds in it by eye.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUR_SENDER = "rootnotify@program.test"


@dataclass(frozen=True)
class Dsn:
    """What a person reading the report finds: who failed, with which status, for which mail."""

    name: str
    kind: str  # "failed" or "delayed"
    recipients: tuple[tuple[str, str, str], ...]  # (address, action, status)
    original_message_id: str | None
    text: str


def _original(message_id: str, to: str, subject: str = "[INC-2026-0001] Notification received",
              body: bool = True) -> str:
    head = (f"Return-Path: <{OUR_SENDER}>\n"
            f"From: Root Program <{OUR_SENDER}>\n"
            f"To: {to}\n"
            f"Subject: {subject}\n"
            "Date: Thu, 26 Nov 2026 12:00:05 +0000\n"
            f"Message-ID: {message_id}\n"
            "Auto-Submitted: auto-replied\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\n")
    return head + ("\nYour notification was received.\n" if body else "")


def postfix(name: str, rcpt: str, status: str, diag: str, mid: str, *,
            headers_only: bool = False, action: str = "failed") -> Dsn:
    boundary = "7C1A83E0A2.1764158406/mx1.remote.test"
    kind_text = ("I'm sorry to have to inform you that your message could not\n"
                 "be delivered to one or more recipients. It's attached below."
                 if action == "failed" else
                 "This is a delivery status notification, NOT a bounce.\n\n"
                 "Your message could not be delivered for more than 4 hour(s).\n"
                 "It will be retried until it is 5 day(s) old.")
    returned_type = "text/rfc822-headers" if headers_only else "message/rfc822"
    text = f"""\
Return-Path: <>
Received: by mx1.remote.test (Postfix)
\tid 7C1A83E0A2; Thu, 26 Nov 2026 12:00:06 +0000 (UTC)
Date: Thu, 26 Nov 2026 12:00:06 +0000 (UTC)
From: MAILER-DAEMON@mx1.remote.test (Mail Delivery System)
Subject: {"Undelivered Mail Returned to Sender" if action == "failed"
          else "Delayed Mail (still being retried)"}
To: {OUR_SENDER}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <20261126120006.7C1A83E0A2@mx1.remote.test>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx1.remote.test.

{kind_text}

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{rcpt}>: {diag}

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx1.remote.test
X-Postfix-Queue-ID: 7C1A83E0A2
X-Postfix-Sender: rfc822; {OUR_SENDER}
Arrival-Date: Thu, 26 Nov 2026 12:00:05 +0000 (UTC)

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.remote.test
Diagnostic-Code: smtp; {diag.split(": ", 1)[-1]}

--{boundary}
Content-Description: Undelivered {"Message Headers" if headers_only else "Message"}
Content-Type: {returned_type}
Content-Transfer-Encoding: 8bit

{_original(mid, rcpt, body=not headers_only)}
--{boundary}--
"""
    return Dsn(name, action, ((rcpt, action, status),), mid, text)


def exim_text(name: str, rcpt: str, status: str, mid: str) -> Dsn:
    text = f"""\
Return-path: <>
Received: from Debian-exim by mail.remote.test with local (Exim 4.96)
\tid 1vXyZa-000Abc-2Q
\tfor {OUR_SENDER}; Thu, 26 Nov 2026 12:00:07 +0000
X-Failed-Recipients: {rcpt}
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@mail.remote.test>
To: {OUR_SENDER}
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1vXyZa-000Abc-2Q@mail.remote.test>
Date: Thu, 26 Nov 2026 12:00:07 +0000

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {rcpt}
    host mx.remote.test [192.0.2.25]
    SMTP error from remote mail server after RCPT TO:<{rcpt}>:
    550 {status} <{rcpt}>: Recipient address rejected: User unknown

------ This is a copy of the message, including all the headers. ------

{_original(mid, rcpt)}"""
    return Dsn(name, "failed", ((rcpt, "failed", status),), mid, text)


def exim_dsn(name: str, rcpt: str, status: str, mid: str) -> Dsn:
    boundary = "1764158407-eximdsn-1804289383"
    text = f"""\
Return-path: <>
X-Failed-Recipients: {rcpt}
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@mail.remote.test>
To: {OUR_SENDER}
Content-Type: multipart/report; report-type=delivery-status; boundary={boundary}
MIME-Version: 1.0
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1vXyZb-000Abd-3R@mail.remote.test>
Date: Thu, 26 Nov 2026 12:00:08 +0000

--{boundary}
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {rcpt}
    mailbox is full: retry timeout exceeded

--{boundary}
Content-type: message/delivery-status

Reporting-MTA: dns; mail.remote.test

Action: failed
Final-Recipient: rfc822;{rcpt}
Status: {status}

--{boundary}
Content-type: message/rfc822

{_original(mid, rcpt)}
--{boundary}--
"""
    return Dsn(name, "failed", ((rcpt, "failed", status),), mid, text)


def exchange(name: str, rcpt: str, status: str, mid: str) -> Dsn:
    boundary = "_000_DB9PR01MB1234EURPRD01PRODOUTLOOKCOM_"
    html = ("<html><body><p><b><font color=\"#000066\">Your message to "
            f"{rcpt} couldn't be delivered.</font></b></p><p>{rcpt.split('@')[0]} "
            "wasn't found at remote.test.</p></body></html>")
    text = f"""\
Received: from DB9PR01MB1234.eurprd01.prod.outlook.com ([fe80::1]) by
 DB9PR01MB1234.eurprd01.prod.outlook.com ([fe80::1%5]) with mapi id
 15.20.7000.000; Thu, 26 Nov 2026 12:00:09 +0000
MIME-Version: 1.0
From: <postmaster@remote.onmicrosoft.com>
To: <{OUR_SENDER}>
Date: Thu, 26 Nov 2026 12:00:09 +0000
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <a1b2c3d4-0000-4000-8000-00000000ndr1@DB9PR01MB1234.eurprd01.prod.outlook.com>
In-Reply-To: {mid}
References: {mid}
Subject: Undeliverable: [INC-2026-0001] Notification received
Auto-Submitted: auto-replied

--{boundary}
Content-Type: multipart/alternative; differences=Content-Type;
\tboundary="b2_{boundary}"

--b2_{boundary}
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to {rcpt} couldn't be delivered.
{rcpt.split('@')[0]} wasn't found at remote.test.

Remote Server returned '550 {status} RESOLVER.ADR.RecipNotFound; not found'

--b2_{boundary}
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

{html}

--b2_{boundary}--

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns;DB9PR01MB1234.eurprd01.prod.outlook.com
Received-From-MTA: dns;mail.program.test
Arrival-Date: Thu, 26 Nov 2026 12:00:08 +0000

Final-Recipient: rfc822;{rcpt}
Action: failed
Status: {status}
Diagnostic-Code: smtp;550 {status} RESOLVER.ADR.RecipNotFound; not found
 [DB9PR01MB1234.eurprd01.prod.outlook.com 2026-11-26T12:00:09.123Z]

--{boundary}
Content-Type: text/rfc822-headers

{_original(mid, rcpt, body=False)}
--{boundary}--
"""
    return Dsn(name, "failed", ((rcpt, "failed", status),), mid, text)


def gmail(name: str, rcpt: str, status: str, mid: str) -> Dsn:
    boundary = "000000000000a1b2c3061f0d9e00"
    text = f"""\
Return-Path: <>
Received: by 2002:a05:6a20:1234:b0:1a2:3b4c:5d6e with SMTP id z1csp123456pzb;
        Thu, 26 Nov 2026 04:00:10 -0800 (PST)
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: {OUR_SENDER}
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: {mid}
In-Reply-To: {mid}
X-Failed-Recipients: {rcpt}
Message-ID: <67890abc.050a0220.1a2b3c.0001.GMR@mx.google.com>
Date: Thu, 26 Nov 2026 04:00:10 -0800 (PST)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="{boundary}"; report-type=delivery-status

--{boundary}
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to {rcpt} because the address couldn't be found, \
or is unable to receive mail.

Learn more here: https://support.google.com/mail/?p=NoSuchUser

The response was:

550 {status} The email account that you tried to reach does not exist.

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; {OUR_SENDER}
Arrival-Date: Thu, 26 Nov 2026 04:00:09 -0800 (PST)
X-Original-Message-ID: {mid}

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: {status}
Diagnostic-Code: smtp; 550-{status} The email account that you tried to reach does not exist.
Last-Attempt-Date: Thu, 26 Nov 2026 04:00:10 -0800 (PST)

--{boundary}
Content-Type: message/rfc822

{_original(mid, rcpt)}
--{boundary}--
"""
    return Dsn(name, "failed", ((rcpt, "failed", status),), mid, text)


def postfix_two(name: str, mid: str) -> Dsn:
    """One report, two recipients: one refused for good, one still retried."""
    boundary = "8D2B94F1B3.1764158411/mx2.remote.test"
    text = f"""\
Return-Path: <>
Date: Thu, 26 Nov 2026 12:00:11 +0000 (UTC)
From: MAILER-DAEMON@mx2.remote.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {OUR_SENDER}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Message-Id: <20261126120011.8D2B94F1B3@mx2.remote.test>

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx2.remote.test.

<gone@remote.test>: host mail.remote.test[192.0.2.26] said: 550 5.1.1
    <gone@remote.test>: Recipient address rejected: User unknown

<slow@remote.test>: host mail.remote.test[192.0.2.26] said: 451 4.3.0
    Temporary lookup failure

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx2.remote.test
X-Postfix-Queue-ID: 8D2B94F1B3

Final-Recipient: rfc822; gone@remote.test
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <gone@remote.test>: Recipient address rejected

Final-Recipient: rfc822; slow@remote.test
Action: delayed
Status: 4.3.0
Diagnostic-Code: smtp; 451 4.3.0 Temporary lookup failure

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{_original(mid, "gone@remote.test, slow@remote.test", body=False)}
--{boundary}--
"""
    return Dsn(name, "failed", (("gone@remote.test", "failed", "5.1.1"),
                                ("slow@remote.test", "delayed", "4.3.0")), mid, text)


def _mid(n: int) -> str:
    return f"<20261126120005.{n:04d}.out@program.test>"


DSNS: list[Dsn] = [
    postfix("postfix-user-unknown.eml", "nobody@remote.test", "5.1.1",
            "host mail.remote.test[192.0.2.26] said: 550 5.1.1 <nobody@remote.test>: "
            "Recipient address rejected: User unknown in virtual mailbox table", _mid(1)),
    postfix("postfix-mailbox-full-headers-only.eml", "full@remote.test", "5.2.2",
            "host mail.remote.test[192.0.2.26] said: 552 5.2.2 Mailbox full", _mid(2),
            headers_only=True),
    postfix("postfix-delayed.eml", "later@remote.test", "4.4.1",
            "connect to mail.remote.test[192.0.2.26]:25: Connection timed out", _mid(3),
            action="delayed", headers_only=True),
    postfix_two("postfix-one-failed-one-delayed.eml", _mid(4)),
    exim_text("exim-text-user-unknown.eml", "left@remote.test", "5.1.1", _mid(5)),
    exim_dsn("exim-dsn-mailbox-full.eml", "quota@remote.test", "5.2.2", _mid(6)),
    exchange("exchange-recipient-not-found.eml", "ghost@remote.test", "5.1.10", _mid(7)),
    gmail("gmail-no-such-user.eml", "typo@remote.test", "5.1.1", _mid(8)),
    postfix("postfix-policy-rejected.eml", "strict@remote.test", "5.7.1",
            "host mail.remote.test[192.0.2.26] said: 554 5.7.1 Message rejected as spam",
            _mid(9)),
]


@dataclass(frozen=True)
class Auto:
    """An automatic reply and the header family that says so (rule: bot/parse/automatic.py)."""

    name: str
    family: str
    text: str


def _reply(extra_headers: str, subject: str, body: str, *, sender: str = "incidents@exampleca.test",
           return_path: str = "<incidents@exampleca.test>") -> str:
    return (f"Return-Path: {return_path}\n"
            f"From: Incident Desk <{sender}>\n"
            f"To: {OUR_SENDER}\n"
            f"Subject: {subject}\n"
            "Date: Thu, 26 Nov 2026 12:01:00 +0000\n"
            f"Message-ID: <auto-{zlib.crc32(subject.encode()):08x}@exampleca.test>\n"
            "In-Reply-To: <20261126120005.0001.out@program.test>\n"
            f"{extra_headers}"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "\n"
            f"{body}\n")


AUTOS: list[Auto] = [
    Auto("auto-submitted-auto-replied.eml", "auto-submitted", _reply(
        "Auto-Submitted: auto-replied\n", "Re: [INC-2026-0001] Notification received",
        "Thank you for your message. It has been received.")),
    Auto("auto-submitted-auto-generated-uppercase.eml", "auto-submitted", _reply(
        "Auto-Submitted: AUTO-GENERATED (ticket system)\n", "Ticket #4711 opened",
        "A ticket was opened for your request.")),
    Auto("x-autoreply-yes.eml", "x-autoreply", _reply(
        "X-Autoreply: yes\n", "Out of office",
        "I am travelling until 3 December.")),
    Auto("x-autorespond.eml", "x-autoreply", _reply(
        "X-Autorespond: Re: [INC-2026-0001] Notification received\n",
        "Re: [INC-2026-0001] Notification received", "We will answer within two days.")),
    Auto("precedence-bulk.eml", "precedence", _reply(
        "Precedence: bulk\n", "Newsletter December", "Our December newsletter.")),
    Auto("precedence-junk.eml", "precedence", _reply(
        "Precedence: junk\n", "Re: [INC-2026-0001] Notification received",
        "This mailbox is not monitored.")),
    Auto("precedence-list.eml", "precedence", _reply(
        "Precedence: list\n", "[pki-announce] digest", "Today's messages.")),
    Auto("list-id.eml", "list", _reply(
        "List-Id: PKI announcements <pki-announce.lists.exampleca.test>\n"
        "List-Unsubscribe: <mailto:pki-announce-leave@lists.exampleca.test>\n",
        "Re: [INC-2026-0001] Notification received", "Posted to the list.",
        return_path="<pki-announce-bounces@lists.exampleca.test>")),
    Auto("outlook-automatic-reply.eml", "vacation-subject", _reply(
        "X-Auto-Response-Suppress: All\nThread-Topic: Notification received\n",
        "Automatic reply: [INC-2026-0001] Notification received",
        "I am out of the office until Monday.")),
    Auto("vacation-subject-only.eml", "vacation-subject", _reply(
        "", "Out of Office: [INC-2026-0001] Notification received",
        "I am away and will read your mail on my return.")),
    Auto("abwesenheitsnotiz.eml", "vacation-subject", _reply(
        "", "Abwesenheitsnotiz: [INC-2026-0001] Notification received",
        "Ich bin bis zum 3. Dezember nicht im Buero.\n\n"
        "I am out of the office until 3 December with limited access to e-mail.")),
]

# Mail written by a person that merely looks automatic: each must be answered.
LOOKALIKES: list[Auto] = [
    Auto("human-auto-submitted-no.eml", "none", _reply(
        "Auto-Submitted: no\n", "Re: [INC-2026-0001] Notification received",
        "Here is the update you asked for.")),
    Auto("human-mentions-out-of-office.eml", "none", _reply(
        "", "Re: [INC-2026-0001] Notification received",
        "Sorry for the delay, I was out of office. The root cause is fixed.")),
    Auto("human-subject-about-autoreplies.eml", "none", _reply(
        "", "Security incident notification: auto-reply loop in our ticketing",
        "Our ticket system answered itself for an hour.")),
    Auto("human-precedence-first-class.eml", "none", _reply(
        "Precedence: first-class\n", "Re: [INC-2026-0001] Notification received",
        "An update on the incident.")),
]


def _b64_lines(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    return "\n".join(text[i:i + 76] for i in range(0, len(text), 76))


FORM_TEXT = ("CA name: Example CA\nIncident type: mis-issuance\n"
             "Who detected the incident: an external researcher\n")

# Broken MIME a real client or a hostile sender produces; every one must end processed.
MALFORMED: dict[str, str] = {
    "boundary-never-closed.eml": (
        "From: incidents@exampleca.test\nTo: rootnotify@program.test\n"
        "Subject: Security incident notification\nMessage-ID: <m1@exampleca.test>\n"
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n"
        f"--outer\nContent-Type: text/plain\n\n{FORM_TEXT}\n--outer\n"
        "Content-Type: application/pdf; name=form.pdf\nContent-Transfer-Encoding: base64\n\n"
        "JVBERi0xLjQK\n"),
    "boundary-missing-parameter.eml": (
        "From: incidents@exampleca.test\nTo: rootnotify@program.test\n"
        "Subject: Security incident notification\nMessage-ID: <m2@exampleca.test>\n"
        "MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n"
        f"--x\nContent-Type: text/plain\n\n{FORM_TEXT}--x--\n"),
    "boundary-differs-from-header.eml": (
        "From: incidents@exampleca.test\nTo: rootnotify@program.test\n"
        "Subject: Security incident notification\nMessage-ID: <m3@exampleca.test>\n"
        "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"aaa\"\n\n"
        f"--bbb\nContent-Type: text/plain\n\n{FORM_TEXT}--bbb--\n"),
    "base64-broken-padding-and-junk.eml": (
        "From: incidents@exampleca.test\nTo: rootnotify@program.test\n"
        "Subject: Security incident notification\nMessage-ID: <m4@exampleca.test>\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: base64\n\n"
        + _b64_lines(FORM_TEXT.encode())[:-3] + "!!*\n%%%%\n"),
    "base64-attachment-truncated.eml": (
        "From: incidents@exampleca.test\nTo: rootnotify@program.test\n"
        "Subject: Security incident notification\nMessage-ID: <m5@exampleca.test>\n"
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nsee attached\n--b\n"
        "Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document;"
        " name=form.docx\nContent-Transfer-Encoding: base64\n\nUEsDBBQABgAIAAAAIQ\n--b--\n"),
    "mixed-charsets-and-8bit-headers.eml": (
        "From: =?iso-8859-1?q?J=F6rg_M=FCller?= <incidents@exampleca.test>\n"
        "To: rootnotify@program.test\n"
        "Subject: Sicherheitsvorfall \xe4\xf6\xfc =?utf-8?b?w6TDtsO8?= =?bogus?q?x?=\n"
        "Message-ID: <m6@exampleca.test>\nMIME-Version: 1.0\n"
        "Content-Type: multipart/alternative; boundary=c\n\n"
        "--c\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
        "Gr\xfc\xdfe, CA name: Example CA\n"
        "--c\nContent-Type: text/html; charset=utf-8\n"
        "Content-Transfer-Encoding: quoted-printable\n\n"
        "<p>Gr=C3=BC=C3=9Fe=\n</p>=ZZ\n--c--\n"),
    "unknown-charset-and-encoding.eml": (
        "From: incidents@exampleca.test\nTo: rootnotify@program.test\n"
        "Subject: Security incident notification\nMessage-ID: <m7@exampleca.test>\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=x-no-such-charset\n"
        "Content-Transfer-Encoding: x-uuencode-maybe\n\n" + FORM_TEXT),
    "header-without-colon-and-no-body.eml": (
        "From: incidents@exampleca.test\nTo rootnotify@program.test\n"
        "Subject: Security incident notification\nThis is not a header\n"),
    "nested-message-rfc822-broken.eml": (
        "From: incidents@exampleca.test\nTo: rootnotify@program.test\n"
        "Subject: Fwd: Security incident notification\nMessage-ID: <m9@exampleca.test>\n"
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=m\n\n"
        "--m\nContent-Type: message/rfc822\n\nFrom: \nContent-Type: multipart/mixed; "
        "boundary=\"\"\n\n--\n--m--\n"),
}


def write_all(base: Path = HERE) -> list[Path]:
    """Write every shape into its folder under `base`; returns the files written."""
    written = []
    for folder, items in (("dsn", [(d.name, d.text) for d in DSNS]),
                          ("autoreply", [(a.name, a.text) for a in AUTOS]),
                          ("lookalike", [(a.name, a.text) for a in LOOKALIKES]),
                          ("malformed", list(MALFORMED.items()))):
        (base / folder).mkdir(exist_ok=True)
        for name, text in items:
            path = base / folder / name
            # Mail on the wire is CRLF; latin-1 keeps the deliberate 8-bit bytes as written.
            path.write_bytes(text.replace("\r\n", "\n").replace("\n", "\r\n").encode("latin-1"))
            written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all():
        print(path.relative_to(HERE))
