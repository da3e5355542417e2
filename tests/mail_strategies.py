"""Hypothesis strategies for hostile mail, and the MIME-to-incident path they are run through.

Shared by the bounded property test (tests/test_never_crash.py) and the longer
fuzz run (bench/fuzz_pipeline.py): random header names and values (controls,
8-bit bytes, encoded words, CRLF), nested MIME trees with odd boundaries,
encodings and bytes, from senders that reach every branch of the router.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import strategies as st
from sqlmodel import select

from bot.context import Context
from bot.decide.route import act
from bot.service.analysis import analyze
from storage.models import InboundMessage
from storage.rawstore import Arrival, store
from tests.harness import BOT, CA_CONTACT, COMPLETE_FORM, OTHER_CA_CONTACT, STAFF

SENDERS = [CA_CONTACT, STAFF, OTHER_CA_CONTACT, "stranger@spam.test", "MAILER-DAEMON@mx.test",
           "", "<>", "a@b", "=?utf-8?q?Eve=0D=0ABcc:_x@evil.test?= <incidents@exampleca.test>"]
HEADER_NAMES = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To",
                "References", "Content-Type", "Content-Transfer-Encoding", "MIME-Version",
                "Content-Disposition", "Auto-Submitted", "Precedence", "X-Autoreply",
                "List-Id", "Return-Path", "Delivered-To", "X-Rootnotify-Loop",
                "X-Failed-Recipients", "Received"]
CONTENT_TYPES = ["text/plain", "text/html", "multipart/mixed", "multipart/alternative",
                 "multipart/report; report-type=delivery-status", "message/rfc822",
                 "message/delivery-status", "application/pkcs7-mime", "application/zip",
                 "application/octet-stream", "text/csv", "multipart/signed", "", "garbage/"]
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "binary", "x-uuencode", "bogus"]
SNIPPETS = [b"", COMPLETE_FORM.encode(), b"/status\n/close\n", b"/request info: x\n",
            b"Final-Recipient: rfc822; incidents@exampleca.test\nAction: failed\n"
            b"Status: 5.1.1\n", b"=?utf-8?b?w7w=?=", b"\xff\xfe\x00", b"PK\x03\x04",
            b"\x1f\x8b\x08\x00", b"-----BEGIN CERTIFICATE-----\nMIIB\n", b"begin 644 x\n",
            b"[INC-2026-0001]", b"<rn.0123456789abcdef@program.test>"]

header_value = st.one_of(
    st.text(max_size=120),
    st.binary(max_size=120).map(lambda b: b.decode("latin-1")),
    st.sampled_from(SENDERS),
    st.sampled_from([v.decode("latin-1") for v in SNIPPETS]),
    st.text(alphabet="=?qQbB_:;<>@\"\\()\r\n\t ,.", max_size=60),
)
body_bytes = st.one_of(st.binary(max_size=600), st.sampled_from(SNIPPETS),
                       st.lists(st.sampled_from(SNIPPETS), max_size=4).map(b"\n".join))
_boundaries = itertools.count()


@st.composite
def mime_part(draw: Callable, depth: int = 0) -> bytes:  # type: ignore[type-arg]
    ctype = draw(st.sampled_from(CONTENT_TYPES))
    headers = [f"Content-Type: {ctype}"]
    if draw(st.booleans()):
        headers.append(f"Content-Transfer-Encoding: {draw(st.sampled_from(ENCODINGS))}")
    if draw(st.booleans()):
        name = draw(st.text(max_size=30)).replace("\n", "\r\n")
        headers.append(f'Content-Disposition: attachment; filename="{name}"')
    if ctype.startswith("multipart") and depth < 4:
        boundary = draw(st.sampled_from(["b", "=_x", "a b", "", "--", f"n{next(_boundaries)}"]))
        headers[0] += f'; boundary="{boundary}"'
        children = draw(st.lists(mime_part(depth + 1), max_size=3))
        closing = draw(st.booleans())
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + c + b"\r\n" for c in children)
        if closing:
            body += b"--" + boundary.encode() + b"--\r\n"
    elif ctype == "message/rfc822" and depth < 4:
        body = draw(mail(depth + 1))
    else:
        body = draw(body_bytes)
    head = "\r\n".join(headers).encode("utf-8", "surrogateescape")
    return head + b"\r\n\r\n" + body


@st.composite
def mail(draw: Callable, depth: int = 0) -> bytes:  # type: ignore[type-arg]
    lines = [f"From: {draw(st.sampled_from(SENDERS))}", f"To: {BOT}",
             f"Subject: {draw(header_value)}", f"Message-ID: <{draw(st.uuids()).hex}@fuzz.test>"]
    for name, value in draw(st.lists(st.tuples(
            st.one_of(st.sampled_from(HEADER_NAMES), st.text(min_size=1, max_size=20)),
            header_value), max_size=8)):
        lines.append(f"{name}: {value}")
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    return head + b"\r\n" + draw(mime_part(depth))


def run_through(ctx: Context, raw: bytes, envelope_from: str = "") -> InboundMessage:
    """Store `raw`, analyse it and act on it in one transaction: what the pipeline does.

    Exceptions propagate: each is a crash of the MIME-to-incident path.
    """
    stored = store(ctx.db, Arrival(raw=raw, channel="smtp", received_at=ctx.clock.now(),
                                   envelope_from=envelope_from, envelope_to=(BOT,)))
    analysis = analyze(raw, ctx.config, ctx.trust, received_at=ctx.clock.now(),
                       envelope_from=envelope_from)
    with ctx.db.write() as session:
        inbound = session.exec(select(InboundMessage).where(
            InboundMessage.id == stored.id)).one()
        act(session, ctx, inbound, analysis)
        return inbound
