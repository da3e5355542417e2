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

import base64
import binascii
import codecs
import email
import email.policy
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Literal

from bot.parse.automatic import is_bounce
from bot.parse.mail.message import ParsedMessage

# Only the head of a bounce is parsed. The report parts come before the
# returned original, which may be the whole 25 MB mail we sent.
MAX_BOUNCE_BYTES = 512 * 1024
# MIME parts visited; a real report has fewer than 20 (Exchange: ~10).
MAX_PARTS = 100
# A DSN about one of our mails names at most the recipients we sent it to.
MAX_RECIPIENTS = 100
# Human-readable text scanned by the text-bounce readers, all parts together.
MAX_TEXT_CHARS = 64 * 1024
# Lines read after a "these addresses failed" line before giving up.
MAX_LINES_AFTER_INTRO = 200
# Lines of detail kept per recipient of a text bounce.
MAX_DETAIL_LINES = 12
# A diagnostic is one line for staff, not the remote server's essay.
MAX_DIAGNOSTIC_CHARS = 200
# RFC 5321 4.5.3.1: path 256 octets with the angle brackets, local part 64, domain 255.
MAX_ADDRESS_CHARS = 254
MAX_LOCAL_PART_CHARS = 64
MAX_DOMAIN_CHARS = 253
# RFC 5322 3.6.4 allows longer; a longer one in a bounce is not ours.
MAX_MESSAGE_ID_CHARS = 250
# VERP tokens are our own outbox ids; a short alphabet survives every MTA.
MAX_VERP_TOKEN_CHARS = 64

Kind = Literal["failed", "delayed", "delivered", "relayed", "expanded", "disposition"]
_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})


@dataclass(frozen=True)
class BouncedRecipient:
    """One recipient of a report.

    `action`: failed, delayed, delivered, relayed, expanded (RFC 3464 2.3.3), or
    for a read receipt its disposition type (displayed, deleted, …).
    `status`: RFC 3463 code "5.1.1"; when the report gives none it is taken from
    the diagnostic (an enhanced code there, or "5.0.0" for a bare 550), else None.
    """

    address: str
    action: str
    status: str | None
    diagnostic: str | None
    original_address: str | None = None  # Original-Recipient: what the sender wrote

    @property
    def permanent(self) -> bool:
        """The address itself was refused: status 5.x.x (no status: action failed)."""
        if self.status:
            return self.status.startswith("5")
        return self.action == "failed"

    @property
    def temporary(self) -> bool:
        """A transient condition: status 4.x.x (no status: action delayed).

        A report may say `failed` with a 4.x.x status (the MTA gave up on a
        transient error, e.g. Gmail on NXDOMAIN): the mail is lost, but the
        address may work next time.
        """
        if self.status:
            return self.status.startswith("4")
        return self.action == "delayed"


@dataclass(frozen=True)
class BounceReport:
    kind: Kind
    recipients: tuple[BouncedRecipient, ...]
    original_message_id: str | None
    verp_token: str | None
    reason: str
    source: str = "rfc3464"  # which reader found the recipients: rfc3464, rfc8098, exim-text, …

    @property
    def permanent(self) -> bool:
        """The mail will not arrive: some recipient failed (or a text bounce named none)."""
        if self.kind != "failed":
            return False
        return not self.recipients or any(r.action == "failed" for r in self.recipients)


# --------------------------------------------------------------------------
# Addresses, Message-IDs, VERP
# --------------------------------------------------------------------------

_LOCAL_PART = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+{_LABEL}$")
_DOMAIN_LITERAL = re.compile(r"^\[\d{1,3}(?:\.\d{1,3}){3}\]$")


def addr_spec(text: str | None) -> str | None:
    """`text` as a lower-case dot-atom addr-spec, or None when it is anything else.

    Accepts `<a@b.c>` and `rfc822; a@b.c`; refuses spaces, quotes, markup, a
    second @, a domain without a dot, and over-long parts. Quoted local parts
    and non-ASCII (SMTPUTF8) addresses are refused too: rootnotify never sends
    to such an address, so no bounce of ours can be about one.
    """
    if not text or len(text) > MAX_ADDRESS_CHARS + 16:
        return None
    value = text.strip()
    if ";" in value:
        address_type, _, value = value.partition(";")
        if address_type.strip().lower() not in ("rfc822", ""):
            return None
        value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    value = value.lower()
    if len(value) > MAX_ADDRESS_CHARS or value.count("@") != 1 or not value.isascii():
        return None
    local, domain = value.split("@")
    if not local or len(local) > MAX_LOCAL_PART_CHARS or not _LOCAL_PART.match(local):
        return None
    if len(domain) > MAX_DOMAIN_CHARS:
        return None
    if not (_DOMAIN.match(domain) or _DOMAIN_LITERAL.match(domain)):
        return None
    return value


_MSGID = re.compile(r"<([^<>\s@]{1,200}@[^<>\s@]{1,200})>")


def _message_id(text: str | None) -> str | None:
    if not text:
        return None
    found = _MSGID.search(text[:4096])
    if not found or len(found.group(0)) > MAX_MESSAGE_ID_CHARS:
        return None
    return found.group(0)


_VERP_TOKEN = re.compile(r"^[a-z0-9][a-z0-9._=-]*$")
_VERP_TAG = "+bounce-"


def verp_address(base_address: str, token: str) -> str:
    """Our return path for one outgoing mail.

    ("rootnotify@program.test", "42") -> "rootnotify+bounce-42@program.test".

    Tokens are case-insensitive (MTAs lower-case local parts: the AOL sample's
    Delivered-To is lower-case where its To is not), so both are lower-cased.
    Raises ValueError for a base that is not a plain address or already has a
    `+` tag, or a token outside [a-z0-9._=-]: those are programming errors.
    """
    base = addr_spec(base_address)
    token = token.lower()
    if base is None or "+" in base.split("@")[0]:
        raise ValueError(f"not a plain base address for VERP: {base_address!r}")
    if not token or len(token) > MAX_VERP_TOKEN_CHARS or not _VERP_TOKEN.match(token):
        raise ValueError(f"VERP token must be 1-{MAX_VERP_TOKEN_CHARS} of [a-z0-9._=-]: {token!r}")
    local, domain = base.split("@")
    address = f"{local}{_VERP_TAG}{token}@{domain}"
    if addr_spec(address) != address:
        raise ValueError(f"VERP address too long: {address!r}")
    return address


def verp_token(address: str) -> str | None:
    """The token of a `verp_address`, lower-case; None for any other address."""
    value = addr_spec(address)
    if value is None:
        return None
    local = value.split("@")[0]
    base, tag, token = local.partition(_VERP_TAG)
    if not tag or not base or "+" in base:
        return None
    if len(token) > MAX_VERP_TOKEN_CHARS or not _VERP_TOKEN.match(token):
        return None
    return token


def _verp_from(message: ParsedMessage, envelope_to: Sequence[str]) -> str | None:
    # The envelope first; after IMAP or a file only the delivery headers keep
    # it, and a bounce's To is the return path it answers.
    candidates = list(envelope_to)
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"):
        candidates.extend(message.header_all(name))
    for candidate in candidates[:MAX_RECIPIENTS]:
        for piece in re.split(r"[,\s]+", str(candidate)[:MAX_ADDRESS_CHARS * 4]):
            token = verp_token(piece)
            if token:
                return token
    return None


# --------------------------------------------------------------------------
# The MIME structure, read once and bounded
# --------------------------------------------------------------------------

_DS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_MDN_TYPES = frozenset(
    {"message/disposition-notification", "message/global-disposition-notification"}
)
_RETURNED_MESSAGE = frozenset({"message/rfc822", "message/global"})
_RETURNED_HEADERS = frozenset(
    {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}
)


@dataclass
class _Structure:
    top_type: str = "text/plain"
    report_type: str | None = None
    status_texts: list[str] = field(default_factory=list)  # message/delivery-status bodies
    mdn_texts: list[str] = field(default_factory=list)
    human_text: str = ""
    returned_message_id: str | None = None
    returned_headers_id: str | None = None


def _decoded_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError, binascii.Error):
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = "utf-8"
    try:
        charset = part.get_content_charset() or "utf-8"
        codecs.lookup(charset)
    except (LookupError, ValueError, TypeError):
        # Unknown names ("unicode-1-1-utf-7", "fakescii"): the text we look
        # for is ASCII, so any ASCII-compatible reading finds it.
        charset = "utf-8"
    return payload[:MAX_TEXT_CHARS].decode(charset, "replace")


def _report_text(part: Message) -> str:
    """A message/delivery-status body as text again (compat32 splits it into header blocks)."""
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload
    blocks = []
    for block in payload if isinstance(payload, list) else []:
        if not isinstance(block, Message):
            continue
        fields = "\n".join(f"{k}: {v}" for k, v in block.items())
        rest = block.get_payload()
        blocks.append(fields + ("\n\n" + rest if isinstance(rest, str) and rest.strip() else ""))
    return "\n\n".join(blocks)


def _walk(msg: Message) -> Iterator[Message]:
    """Parts of `msg`, bounded, never entering a returned mail or a report's field blocks."""
    stack: list[Message] = [msg]
    seen = 0
    while stack and seen < MAX_PARTS:
        part = stack.pop()
        seen += 1
        yield part
        if part.get_content_type() in _RETURNED_MESSAGE | _DS_TYPES | _MDN_TYPES:
            continue  # their payloads are a returned mail or report fields, not report parts
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, Message)]))


def _structure(raw: bytes) -> _Structure:
    msg = email.message_from_bytes(raw[:MAX_BOUNCE_BYTES], policy=email.policy.compat32)
    found = _Structure(top_type=msg.get_content_type())
    report_type = msg.get_param("report-type")
    found.report_type = report_type.lower() if isinstance(report_type, str) else None
    texts: list[str] = []
    size = 0
    for part in _walk(msg):
        ctype = part.get_content_type()
        if ctype in _DS_TYPES:
            found.status_texts.append(_report_text(part))
        elif ctype in _MDN_TYPES:
            found.mdn_texts.append(_report_text(part))
        elif ctype in _RETURNED_MESSAGE and found.returned_message_id is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found.returned_message_id = _message_id(str(inner[0].get("Message-ID", "")))
        elif ctype in _RETURNED_HEADERS and found.returned_headers_id is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                # compat32 parses message/rfc822-headers (MailSite) as a message.
                found.returned_headers_id = _message_id(str(inner[0].get("Message-ID", "")))
            else:
                found.returned_headers_id = _header_message_id(_decoded_text(part))
        elif ctype == "text/plain" and size < MAX_TEXT_CHARS:
            text = _decoded_text(part)
            texts.append(text)
            size += len(text)
    found.human_text = "\n".join(texts)[:MAX_TEXT_CHARS]
    return found


def _fallback_structure(raw: bytes) -> _Structure:
    # The stdlib parser failed on hostile bytes: read the head as text.
    return _Structure(human_text=raw[:MAX_TEXT_CHARS].decode("latin-1"))


_HEADER_MSGID = re.compile(r"^[ \t]*message-id[ \t]*:[ \t]*(<[^<>\s]+>)", re.I | re.M)


def _header_message_id(text: str) -> str | None:
    found = _HEADER_MSGID.search(text[:MAX_TEXT_CHARS])
    return _message_id(found.group(1)) if found else None


# --------------------------------------------------------------------------
# RFC 3464 fields
# --------------------------------------------------------------------------

_BASE64_BLOCK = re.compile(r"^[A-Za-z0-9+/=\s]{16,}$")
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY_CODE = re.compile(r"(?<![\w.\[#])([245])\d\d(?=[ -]\S)")


def _blocks(text: str, *, decode_base64: bool = True) -> Iterator[dict[str, str]]:
    """Blank-line separated groups of `Name: value` fields, names lower-cased."""
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text[:MAX_TEXT_CHARS]):
        if decode_base64 and ":" not in chunk and _BASE64_BLOCK.match(chunk):
            # Exchange Online re-encodes the per-recipient fields of a relayed
            # Postfix DSN as a base64 blob inside the report part.
            try:
                decoded = base64.b64decode(re.sub(r"\s", "", chunk), validate=True)
            except (binascii.Error, ValueError):
                continue
            yield from _blocks(decoded.decode("utf-8", "replace"), decode_base64=False)
            continue
        fields: dict[str, str] = {}
        last = None
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
            elif ":" in line:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if re.fullmatch(r"[a-z0-9-]{1,60}", name):
                    last = name
                    fields.setdefault(name, value.strip())
        if fields:
            yield fields


def _status(text: str | None) -> str | None:
    if not text:
        return None
    found = _STATUS.search(text)
    return ".".join(found.groups()) if found else None


def _diagnostic(text: str | None) -> str | None:
    if not text:
        return None
    value = re.sub(r"\s+", " ", text).strip()
    value = re.sub(r"^[A-Za-z0-9-]{1,20}\s*;\s*", "", value)  # the "smtp;" type
    value = value.strip(" '\"")
    if len(value) > MAX_DIAGNOSTIC_CHARS:
        value = value[: MAX_DIAGNOSTIC_CHARS - 1] + "…"
    return value or None


def _status_from_diagnostic(diagnostic: str | None) -> str | None:
    """An enhanced code in the text, else a bare SMTP reply's class (550 -> 5.0.0, RFC 3463)."""
    if not diagnostic:
        return None
    return _status(diagnostic) or (
        f"{found.group(1)}.0.0" if (found := _REPLY_CODE.search(diagnostic)) else None
    )


def _action(value: str | None, status: str | None, fallback: str) -> str:
    token = (value or "").strip().split(" ")[0].lower()
    if token in _ACTIONS:
        return token
    if status:  # no or unknown Action: the status class says it
        return {"5": "failed", "4": "delayed", "2": "delivered"}[status[0]]
    return fallback


def _recipients_from_fields(
    texts: Sequence[str],
) -> tuple[list[BouncedRecipient], dict[str, str]]:
    recipients: list[BouncedRecipient] = []
    per_message: dict[str, str] = {}
    for text in texts:
        for fields in _blocks(text):
            final = addr_spec(fields.get("final-recipient"))
            original = addr_spec(fields.get("original-recipient"))
            if final is None and original is None:
                if not recipients:
                    per_message.update({k: v for k, v in fields.items() if k not in per_message})
                continue
            diagnostic = _diagnostic(fields.get("diagnostic-code"))
            status = _status(fields.get("status")) or _status_from_diagnostic(diagnostic)
            # Boxbe puts Action: in the per-message block; only a recipient's own counts.
            action = _action(fields.get("action"), status, "failed")
            recipients.append(
                BouncedRecipient(
                    address=final or original or "",
                    action=action,
                    status=status,
                    diagnostic=diagnostic,
                    original_address=original,
                )
            )
            if len(recipients) >= MAX_RECIPIENTS:
                return recipients, per_message
    return recipients, per_message


# --------------------------------------------------------------------------
# Text bounces: an intro line, then the addresses, each with some detail
# --------------------------------------------------------------------------

# (pattern of the intro line, action of the addresses after it, reader name)
TEXT_INTROS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern, re.I), action, source)
    for pattern, action, source in (
        (r"following address(?:\(es\))? failed", "failed", "exim-text"),
        (r"address(?:\(es\))? (?:have|has) (?:yet|not yet been) (?:to be )?delivered", "delayed",
         "exim-text"),
        (r"wasn't able to deliver your message to the following addresses", "failed", "qmail-text"),
        (r"delivery to the following recipients? failed permanently", "failed", "gmail-text"),
        (r"delivery to the following recipients? has been delayed", "delayed", "gmail-text"),
        (r"delivery has failed to these recipients or groups", "failed", "exchange-text"),
        (r"did not reach the following recipient", "failed", "exchange-text"),
        (r"following addresses had permanent fatal errors", "failed", "sendmail-text"),
        (r"following addresses had transient non-fatal errors", "delayed", "sendmail-text"),
        (r"following addresses had delivery problems", "failed", "sendmail-text"),
        (r"could not\s+be delivered to one or more recipients", "failed", "postfix-text"),
    )
)
# Where the returned copy begins: nothing after it is about the delivery.
_COPY_MARKER = re.compile(
    r"^\s*(?:-+ ?This is a copy of the message|--- Below this line is a copy|-+ ?Original message"
    r"|Original message (?:headers|follows)|-+ ?The header of the original message"
    r"|-+ ?Transcript of session follows)",
    re.I,
)
_ADDRESS_LINE = re.compile(
    r"^\s*<?(?P<addr>[^\s<>()\"',;:]+@[^\s<>()\"',;:]+?)>?"
    r"(?:<mailto:[^>]*>)?(?:\s*:|\s+on\s.*|\s+\(.*\)|\s*:\s.*)?\s*$",
    re.I,
)


def _text_recipients(text: str) -> tuple[list[BouncedRecipient], str | None]:
    lines = text[:MAX_TEXT_CHARS].splitlines()
    for index, line in enumerate(lines):
        for intro, action, source in TEXT_INTROS:
            if intro.search(line):
                found = _after_intro(lines[index + 1 : index + 1 + MAX_LINES_AFTER_INTRO], action)
                if found:
                    return found, source
    return [], None


def _after_intro(lines: list[str], action: str) -> list[BouncedRecipient]:
    details: dict[str, list[str]] = {}
    current: str | None = None
    for line in lines:
        if _COPY_MARKER.match(line):
            break
        matched = _ADDRESS_LINE.match(line)
        address = addr_spec(matched.group("addr")) if matched else None
        if address:
            current = address
            details.setdefault(address, [])
            rest = line[matched.end("addr") :].strip(" >:") if matched else ""
            if rest and not rest.lower().startswith(("on ", "<mailto")):
                details[address].append(rest)
            if len(details) >= MAX_RECIPIENTS:
                break
        elif current and line.strip() and len(details[current]) < MAX_DETAIL_LINES:
            details[current].append(line.strip())
    recipients = []
    for address, lines_of in details.items():
        detail = " ".join(lines_of)
        reply = _REPLY_CODE.search(detail)
        diagnostic = _diagnostic(detail[reply.start() :] if reply else (lines_of or [""])[0])
        status = _status(detail) or _status_from_diagnostic(diagnostic)
        recipients.append(BouncedRecipient(address, action, status, diagnostic))
    return recipients


def _failed_recipients_header(message: ParsedMessage) -> list[BouncedRecipient]:
    out: list[BouncedRecipient] = []
    for value in message.header_all("X-Failed-Recipients"):
        for piece in re.split(r"[,\s]+", value[: MAX_ADDRESS_CHARS * MAX_RECIPIENTS]):
            address = addr_spec(piece)
            if address and all(r.address != address for r in out):
                out.append(BouncedRecipient(address, "failed", None, None))
    return out[:MAX_RECIPIENTS]


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
