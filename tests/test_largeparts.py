"""Large attachments are lifted out before parsing and decoded on demand, with the same result."""

from __future__ import annotations

import os
from email.message import EmailMessage

import pytest

import bot.parse.mail.message as message_module
from bot.parse.mail.largeparts import LIFT_MIN_BYTES, lift
from bot.parse.mail.message import parse_message

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


def _with_body(base64_text: bytes) -> bytes:
    """A list mail whose attachment body is `base64_text`, as a sender wrote it."""
    return (b"From: incidents@exampleca.test\r\nTo: rootnotify@program.test\r\n"
            b"Subject: the list\r\nMessage-ID: <b64@exampleca.test>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n'
            b"Content-Type: text/plain\r\n\r\nattached\r\n--XX\r\n"
            b'Content-Type: text/csv; name="list.csv"\r\nContent-Disposition: attachment; '
            b'filename="list.csv"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + base64_text + b"\r\n--XX--\r\n")


@pytest.mark.parametrize("shape", ["76 CRLF", "64 LF", "one line", "padded 1", "padded 2",
                                   "short of a group", "padding inside", "bad padding"])
def test_a_lifted_list_read_as_a_stream_is_the_bytes_it_decodes_to(monkeypatch, shape) -> None:
    import base64

    import bot.parse.mail.largeparts as largeparts

    # Slices of a few KB, not aligned to lines or groups of four: many slice edges.
    monkeypatch.setattr(largeparts, "STREAM_SLICE_BYTES", 4099)
    data = os.urandom(LIFT_MIN_BYTES + {"padded 1": 2, "padded 2": 1}.get(shape, 0) + 300)
    text = base64.b64encode(data)
    if shape == "short of a group":
        text = text[:-1]  # not a whole number of groups: `decode` keeps the text
    if shape == "padding inside":
        text = text[:40_000] + b"==" + text[40_000:]
    if shape == "bad padding":
        text = text[:-4] + b"A=B="
    width, end = {"64 LF": (64, b"\n"), "one line": (len(text), b"")}.get(shape, (76, b"\r\n"))
    body = end.join(text[i:i + width] for i in range(0, len(text), width))
    attachment = parse_message(_with_body(body)).attachments[-1]
    decoded_whole: list[int] = []
    decode = largeparts.LiftedParts.decode
    monkeypatch.setattr(largeparts.LiftedParts, "decode",
                        lambda parts, index: decoded_whole.append(index) or decode(parts, index))
    with attachment.open() as stream:
        streamed = stream.read()
    head, size = attachment.head(1000), attachment.size
    streamable = shape in ("76 CRLF", "64 LF", "one line", "padded 1", "padded 2")
    assert (decoded_whole == []) == streamable  # the others are decoded whole, as before
    whole = attachment.data
    assert (streamed, head, size) == (whole, whole[:1000], len(whole))
    if streamable:
        assert whole == data
