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
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses
from importlib.resources import files
from pathlib import Path

import jinja2

from bot.clock import as_utc
from bot.parse.bounces import verp_address
from bot.rules.hygiene import LOOP_HEADER

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
    msg = EmailMessage(policy=SMTP)
    msg["From"] = from_header
    msg["To"] = ", ".join(_valid(spec.to))
    if spec.cc:
        msg["Cc"] = ", ".join(_valid(spec.cc))
    msg["Subject"] = subject
    msg["Date"] = format_datetime(as_utc(at))
    msg["Message-ID"] = message_id
    if spec.in_reply_to:
        msg["In-Reply-To"] = header_safe(spec.in_reply_to, 998)
    refs = [header_safe(r, 998) for r in spec.references if r]
    if spec.in_reply_to and spec.in_reply_to not in refs:
        refs.append(header_safe(spec.in_reply_to, 998))
    if refs:
        msg["References"] = " ".join(refs[-20:])
    # RFC 3834: mark every automatic mail; ask Exchange not to answer it with OOF.
    msg["Auto-Submitted"] = spec.auto_submitted
    msg["X-Auto-Response-Suppress"] = "All"
    msg[LOOP_HEADER] = loop_marker
    msg["MIME-Version"] = "1.0"
    msg.set_content(spec.body, subtype="plain", charset="utf-8", cte="quoted-printable")
    for filename, content_type, data in spec.attachments:
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream",
                           filename=safe_filename(filename))
    recipients = list(dict.fromkeys([*_valid(spec.to), *_valid(spec.cc)]))
    return Composed(
        message_id=message_id,
        # The envelope sender whose bounces name the outgoing mail they concern.
        envelope_from=verp_address(bot_address, token),
        recipients=recipients,
        subject=subject,
        data=msg.as_bytes(),
    )


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
