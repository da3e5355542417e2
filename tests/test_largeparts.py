"""Large attachments are lifted out before parsing and decoded on demand, with the same result."""

from __future__ import annotations

import os
from email.message import EmailMessage

import pytest

import bot.parse.message as message_module
from bot.parse.largeparts import LIFT_MIN_BYTES, lift
from bot.parse.message import parse_message

BIG = os.urandom(LIFT_MIN_BYTES + 1000)


def _mail(inner: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "incidents@exampleca.test"
    msg["To"] = "rootnotify@program.test"
    msg["Subject"] = "Re: [INC-2026-0001] the list"
    msg["Message-ID"] = "<big@exampleca.test>"
    msg.set_content("The list is attached.\n")
    msg.add_attachment(BIG, maintype="application", subtype="gzip", filename="list.csv.gz")
    msg.add_attachment(b"serial\n01\n", maintype="text", subtype="csv", filename="small.csv")
    if inner is not None:
        msg.add_attachment(inner, maintype="message", subtype="rfc822", filename="fwd.eml")
    return msg.as_bytes()


def _ordinary(raw: bytes, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as patched:
        patched.setattr(message_module, "lift", lambda raw: (raw, None))
        return parse_message(raw)


def test_a_large_attachment_is_lifted_and_decoded_only_when_read(monkeypatch) -> None:
    raw = _mail()
    skeleton, lifted = lift(raw)
    assert lifted is not None and len(lifted.spans) == 1 and len(skeleton) < 4096
    parsed = parse_message(raw)
    big = parsed.attachments[0]
    assert "not decoded yet" in repr(big)
    assert big.data == BIG and big.filename == "list.csv.gz"
    ordinary = _ordinary(raw, monkeypatch)
    assert parsed.attachments == ordinary.attachments
    assert parsed.text_plain == ordinary.text_plain == "The list is attached.\n"
    assert parsed.headers == ordinary.headers and parsed.defects == ordinary.defects


def test_a_large_part_inside_a_forwarded_message_comes_back_whole(monkeypatch) -> None:
    raw = _mail(inner=_mail())
    parsed = parse_message(raw)
    ordinary = _ordinary(raw, monkeypatch)
    assert [a.filename for a in parsed.attachments] == [a.filename for a in ordinary.attachments]
    assert parsed.attachments == ordinary.attachments
    assert parsed.text_plain == ordinary.text_plain


def test_a_large_base64_text_body_is_parsed_the_ordinary_way(monkeypatch) -> None:
    msg = EmailMessage()
    msg["From"] = "incidents@exampleca.test"
    msg["Subject"] = "long text"
    body = "line of text\n" * (LIFT_MIN_BYTES // 10)
    msg.set_content(body, cte="base64")
    raw = msg.as_bytes()
    assert lift(raw)[1] is None  # no file name: not an attachment, not lifted
    assert parse_message(raw).text_plain == _ordinary(raw, monkeypatch).text_plain == body
