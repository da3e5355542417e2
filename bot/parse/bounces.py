"""Read a bounce of our own mail: who failed, why, temporary or permanent, and which mail it was.

RFC 3464 delivery status notifications (and RFC 8098 read receipts, reported
as kind "disposition") are read from their `message/delivery-status` part;
the text-only bounces still common in the wild (Exim, qmail, old sendmail,
old Exchange, Office 365's human part, old Gmail) are read from their text.

The work starts again from the raw bytes with the stdlib `email` parser
(policy compat32, the fast one): mail-parser flattens the report structure.
Every address taken from a report is checked to be a plain addr-spec before
it is believed (GNU Mailman bug 892 took HTML fragments for addresses).

Bytes in, typed result out: no I/O, no clock; never raises for any input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.parse.automatic import is_bounce
from bot.parse.bounceaddress import _message_id, _verp_from, addr_spec, verp_address, verp_token
from bot.parse.bouncemime import (
    _blocks,
    _fallback_structure,
    _header_message_id,
    _recipients_from_fields,
    _Structure,
    _structure,
)
from bot.parse.bouncetext import _failed_recipients_header, _text_recipients
from bot.parse.bouncetypes import MAX_RECIPIENTS, BouncedRecipient, BounceReport, Kind
from bot.parse.mail.message import ParsedMessage

# Callers import the result types and the VERP helpers from here, as before the split.
__all__ = [
    "MAX_RECIPIENTS", "BounceReport", "BouncedRecipient", "addr_spec", "parse_bounce",
    "verp_address", "verp_token",
]


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------

_DELAY_WORDS = re.compile(r"delay|warning|still being retried|will (?:be )?retr", re.I)


def _kind(recipients: Sequence[BouncedRecipient], hint: str) -> Kind:
    actions = {r.action for r in recipients}
    for kind in ("failed", "delayed", "delivered", "relayed", "expanded"):
        if kind in actions:
            return kind  # type: ignore[return-value]
    return "delayed" if _DELAY_WORDS.search(hint) else "failed"


def _reason(recipients: Sequence[BouncedRecipient], kind: str, subject: str) -> str:
    if not recipients:
        return f"{kind}: no recipient named ({subject[:80] or 'no subject'})"
    first = recipients[0]
    what = first.diagnostic or " ".join(x for x in (first.status, first.action) if x)
    more = f"; and {len(recipients) - 1} more" if len(recipients) > 1 else ""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", f"{what} ({first.address}){more}")


def _original_id(
    found: _Structure, per_message: dict[str, str], message: ParsedMessage
) -> str | None:
    return (
        found.returned_message_id
        or found.returned_headers_id
        or _message_id(per_message.get("x-original-message-id"))
        or _message_id(per_message.get("original-message-id"))
        # Exchange and Gmail thread their reports to the mail they report on.
        or (message.in_reply_to or [None])[0]
        or (message.references or [None])[-1]
        or _header_message_id(found.human_text)
    )


def parse_bounce(
    raw: bytes, message: ParsedMessage, envelope_to: Sequence[str] = ()
) -> BounceReport | None:
    """The delivery (or read) report in `raw`, or None when it is neither.

    `message` is `raw` parsed by `parse_message`; `envelope_to` the SMTP
    recipients, where the VERP token is read first.
    """
    try:
        found = _structure(raw)
    except Exception:  # the stdlib parser raises assorted types on hostile MIME
        found = _fallback_structure(raw)
    status_texts, mdn_texts = found.status_texts, found.mdn_texts
    # A report part counts only inside a report (or in a mail that is a bounce
    # by its headers): a person may attach one to a question, or forward a bounce.
    structural_dsn = found.top_type == "message/delivery-status" or (
        found.top_type == "multipart/report"
        and (found.report_type in ("delivery-status", "global-delivery-status") or status_texts)
    )
    structural_mdn = found.top_type == "multipart/report" and (
        found.report_type == "disposition-notification" or bool(mdn_texts)
    )
    if structural_mdn and not structural_dsn:
        return _mdn_report(found, message, envelope_to)
    if not (structural_dsn or is_bounce(message)):
        return None
    recipients, per_message = _recipients_from_fields(status_texts)
    source = "rfc3464"
    if not recipients:
        # The part was lost to a broken boundary, or never was: look for its fields in the text.
        recipients, text_per_message = _recipients_from_fields([found.human_text])
        per_message = {**text_per_message, **per_message}
        source = "rfc3464-text"
    if not recipients:
        text_recipients, text_source = _text_recipients(found.human_text)
        recipients, source = text_recipients, text_source or source
    if not recipients:
        recipients, source = _failed_recipients_header(message), "x-failed-recipients"
    kind = _kind(recipients, f"{message.subject} {per_message.get('action', '')}")
    return BounceReport(
        kind=kind,
        recipients=tuple(recipients),
        original_message_id=_original_id(found, per_message, message),
        verp_token=_verp_from(message, envelope_to),
        reason=_reason(recipients, kind, message.subject),
        source=source if recipients else "none",
    )


def _mdn_report(
    found: _Structure, message: ParsedMessage, envelope_to: Sequence[str]
) -> BounceReport:
    recipients: list[BouncedRecipient] = []
    per_message: dict[str, str] = {}
    for fields in _blocks("\n\n".join(found.mdn_texts)):
        per_message.update({k: v for k, v in fields.items() if k not in per_message})
        final = addr_spec(fields.get("final-recipient"))
        original = addr_spec(fields.get("original-recipient"))
        if final or original:
            # "manual-action/MDN-sent-manually; displayed": the type follows the semicolon.
            disposition = fields.get("disposition", "").partition(";")[2].strip().lower()
            disposition = re.split(r"[\s/]", disposition, maxsplit=1)[0][:40] or "unknown"
            recipients.append(
                BouncedRecipient(final or original or "", disposition, None, None, original)
            )
        if len(recipients) >= MAX_RECIPIENTS:
            break
    reason = (
        f"read receipt: {recipients[0].action} ({recipients[0].address})"
        if recipients
        else "read receipt"
    )
    return BounceReport(
        kind="disposition",
        recipients=tuple(recipients),
        original_message_id=_message_id(per_message.get("original-message-id"))
        or _original_id(found, {}, message),
        verp_token=_verp_from(message, envelope_to),
        reason=reason,
        source="rfc8098",
    )
