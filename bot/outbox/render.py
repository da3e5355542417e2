"""Jinja2 templates to complete RFC 5322 messages, safe against header injection.

Templates are looked up first in the operator's folder (`[bot] templates_dir`),
then in the packaged `mailtemplates/`. A template's first line is
`Subject: …`; the rest, after one blank line, is the text body.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.charset import QP, Charset
from email.encoders import encode_base64
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from importlib.resources import files
from io import BytesIO
from pathlib import Path

import jinja2

from bot.clock import as_utc
from bot.parse.automatic import LOOP_HEADER
from bot.parse.bounces import verp_address

# The longest subject we send; longer incoming subjects are cut, not folded forever.
MAX_SUBJECT_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def header_safe(value: str, limit: int = MAX_SUBJECT_CHARS) -> str:
    """A value from incoming mail made safe for a header: no CR, LF or other controls."""
    value = _CONTROL.sub(" ", value).strip()
    return value[:limit]


def packaged_templates_dir() -> Path:
    return Path(str(files("mailtemplates")))


class Renderer:
    def __init__(self, templates_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if templates_dir:
            loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
        loaders.append(jinja2.FileSystemLoader(str(packaged_templates_dir())))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            # Templates are named `*.html.j2`: match those, not only `*.html`,
            # or an HTML template would render a sender's markup unescaped.
            autoescape=jinja2.select_autoescape(["html", "htm", "html.j2", "htm.j2"],
                                                default_for_string=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _format_when

    def render(self, name: str, **context: object) -> tuple[str, str]:
        """(subject, body) of template `name` (e.g. "acknowledgement.txt.j2")."""
        text = self.env.get_template(name).render(**context)
        first, _, rest = text.partition("\n")
        if not first.lower().startswith("subject:"):
            raise ValueError(f"template {name} must start with a 'Subject:' line")
        return header_safe(first[len("subject:"):]), rest.lstrip("\n")

    def render_text(self, name: str, **context: object) -> str:
        return self.env.get_template(name).render(**context)


def _format_when(value: datetime | None, tz: object = None) -> str:
    if value is None:
        return "unknown"
    value = as_utc(value)
    utc = value.strftime("%Y-%m-%d %H:%M UTC")
    if tz is not None and getattr(tz, "key", "UTC") not in ("UTC", "Etc/UTC"):
        local = value.astimezone(tz)  # type: ignore[arg-type]
        return f"{utc} ({local.strftime('%Y-%m-%d %H:%M %Z')})"
    return utc


@dataclass
class Composed:
    message_id: str
    envelope_from: str
    recipients: list[str]
    subject: str
    data: bytes


@dataclass
class MailSpec:
    kind: str
    to: Sequence[str]
    subject: str
    body: str
    cc: Sequence[str] = ()
    incident_id: str | None = None
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    auto_submitted: str = "auto-replied"
    attachments: Sequence[tuple[str, str, bytes]] = field(default_factory=tuple)


def new_token() -> str:
    return secrets.token_hex(8)


def message_id_for(token: str, bot_address: str) -> str:
    return f"<rn.{token}@{bot_address.rpartition('@')[2]}>"


def compose(
    spec: MailSpec, *, from_header: str, bot_address: str, loop_marker: str, at: datetime
) -> Composed:
    token = new_token()
    message_id = message_id_for(token, bot_address)
    subject = header_safe(spec.subject)
    if spec.incident_id and f"[{spec.incident_id}]" not in subject:
        subject = f"[{spec.incident_id}] {subject}"
    headers: list[tuple[str, str]] = [
        ("From", _address_header(from_header)),
        ("To", ", ".join(_valid(spec.to))),
    ]
    if spec.cc:
        headers.append(("Cc", ", ".join(_valid(spec.cc))))
    headers += [("Subject", subject), ("Date", format_datetime(as_utc(at))),
                ("Message-ID", message_id)]
    if spec.in_reply_to:
        headers.append(("In-Reply-To", header_safe(spec.in_reply_to, 998)))
    refs = [header_safe(r, 998) for r in spec.references if r]
    if spec.in_reply_to and spec.in_reply_to not in refs:
        refs.append(header_safe(spec.in_reply_to, 998))
    if refs:
        headers.append(("References", " ".join(refs[-20:])))
    # RFC 3834: mark every automatic mail; ask Exchange not to answer it with OOF.
    headers += [("Auto-Submitted", spec.auto_submitted), ("X-Auto-Response-Suppress", "All"),
                (LOOP_HEADER, loop_marker)]
    msg = _mime_body(spec)
    # The body's MIME headers go after ours, so a person reading the raw mail
    # sees From, To and Subject first.
    mime_headers = list(msg.items())
    for name, _ in mime_headers:
        del msg[name]
    for name, value in [*headers, *mime_headers]:
        msg[name] = _encoded(name, value) if isinstance(value, str) else value
    recipients = list(dict.fromkeys([*_valid(spec.to), *_valid(spec.cc)]))
    return Composed(
        message_id=message_id,
        # The envelope sender whose bounces name the outgoing mail they concern.
        envelope_from=verp_address(bot_address, token),
        recipients=recipients,
        subject=subject,
        data=_as_bytes(msg),
    )


# compat32 objects and generator: the EmailMessage API re-parsed every header
# through the header registry and was most of the cost of a mail (~2.5 ms of
# ~3 ms in bench/intake.py). Values are made safe (header_safe, validated
# addresses) before they get here, and non-ASCII is RFC 2047-encoded.
_OUTPUT = compat32.clone(linesep="\r\n", max_line_length=78)
_QP_UTF8 = Charset("utf-8")
_QP_UTF8.header_encoding = QP
_QP_UTF8.body_encoding = QP


def _encoded(name: str, value: str) -> str | Header:
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        return Header(value, _QP_UTF8, maxlinelen=78, header_name=name)
    return value


def _address_header(value: str) -> str:
    """The configured From, its display name encoded when it is not ASCII."""
    name, addr = parseaddr(header_safe(value, 998))
    return formataddr((name, addr), charset="utf-8") if name else addr


def _mime_body(spec: MailSpec) -> Message:
    text = MIMEText(spec.body, "plain", _QP_UTF8)
    if not spec.attachments:
        return text
    outer = MIMEMultipart("mixed")
    del text["MIME-Version"]  # once, on the message, not on each part (RFC 2045 4)
    outer.attach(text)
    for filename, content_type, data in spec.attachments:
        maintype, _, subtype = content_type.partition("/")
        part = MIMEBase(maintype, subtype or "octet-stream")
        del part["MIME-Version"]
        part.set_payload(data)
        encode_base64(part)
        name = safe_filename(filename)
        try:
            name.encode("ascii")
            part.add_header("Content-Disposition", "attachment", filename=name)
        except UnicodeEncodeError:  # RFC 2231 for names that are not ASCII
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
        outer.attach(part)
    return outer


def _as_bytes(msg: Message) -> bytes:
    out = BytesIO()
    BytesGenerator(out, policy=_OUTPUT).flatten(msg)
    return out.getvalue()


def _valid(addresses: Sequence[str]) -> list[str]:
    out = []
    for _name, addr in getaddresses([header_safe(a, 320) for a in addresses]):
        if addr and "@" in addr and not _CONTROL.search(addr):
            out.append(addr.lower())
    return list(dict.fromkeys(out))


def safe_filename(name: str) -> str:
    """A file name without paths, controls or quotes, for attachments we send."""
    name = _CONTROL.sub("", name).replace("/", "_").replace("\\", "_").replace('"', "")
    name = name.strip(". ") or "attachment"
    return name[:100]
