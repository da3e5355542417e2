"""Everything read from one stored message, before any decision: one `Analysis`.

Runs outside any database transaction (parsing and signature checks are the
expensive part), so that the transaction that acts on it stays short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from bot.config import Config
from bot.parse.automatic import AutomaticVerdict, judge
from bot.parse.commands import extract_command_lines
from bot.parse.forms.notification import MIN_REPLY_LABELS, ParsedForm, find_form
from bot.parse.mail.message import Attachment, ParsedMessage, parse_message
from bot.parse.smime.verify import SmimeResult, verify_message
from bot.trust import Trust

log = logging.getLogger("rootnotify.analysis")


@dataclass
class Analysis:
    message: ParsedMessage
    smime: SmimeResult
    automatic: AutomaticVerdict
    form: ParsedForm | None
    command_lines: list[str]
    certificate_lists: list[Attachment] = field(default_factory=list)
    final_report: object | None = None  # bot.parse.forms.reports.ReportCheck
    problems: list[str] = field(default_factory=list)
    # Form answers read with one label enough: what a reply in an incident's
    # thread answers (R1a). Never opens an incident; `form` does that.
    answers: ParsedForm | None = None
    envelope_from: str | None = None  # SMTP MAIL FROM; None for IMAP and files

    @property
    def body_text(self) -> str:
        return self.message.text_plain or ""


def _anchors_for(config: Config, trust: Trust, sender: str | None) -> tuple:
    if config.is_staff(sender):
        return trust.staff
    ca = config.ca_for_address(sender)
    return trust.ca_anchors.get(ca.name, ()) if ca else ()


def _with_inner(outer: ParsedMessage, raw: bytes, smime: SmimeResult,
                config: Config) -> ParsedMessage:
    """The outer headers (who, what thread) with the signed or decrypted content's body.

    The content is read under the deployment's limits, as the mail was: under
    the defaults a signed 116 MB list was cut at 25 MiB. A large signed part
    is parsed where it lies in `raw` (smime.content_span), not copied out.
    """
    if smime.content_span is not None:
        inner = parse_message(raw, config.limits, span=smime.content_span)
    else:
        inner = parse_message(bytes(smime.content or b""), config.limits)
    return replace(outer, text_plain=inner.text_plain, text_html=inner.text_html,
                   attachments=inner.attachments, defects=[*outer.defects, *inner.defects])


def analyze(raw: bytes, config: Config, trust: Trust, *, received_at: datetime,
            envelope_from: str | None) -> Analysis:
    message = parse_message(raw, config.limits)
    problems = list(message.defects)
    smime = verify_message(raw, anchors=_anchors_for(config, trust, message.from_address),
                           at=received_at, from_address=message.from_address,
                           decryption_key=trust.decryption_key,
                           decryption_certificate=trust.decryption_certificate)
    if smime.content is not None:
        message = _with_inner(message, raw, smime, config)
    automatic = judge(message, envelope_from, loop_marker=config.bot.loop_marker)

    ruleset = config.bot.ruleset
    tz = config.bot.timezone
    form = None
    command_lines: list[str] = []
    certificate_lists: list[Attachment] = []
    final_report = None
    answers = None
    if automatic.kind is None:
        if config.is_staff(message.from_address):
            command_lines = extract_command_lines(message.text_plain or "")
        else:
            form = find_form(message, ruleset, tz)
            answers = form or find_form(message, ruleset, tz, min_labels=MIN_REPLY_LABELS)
            certificate_lists = _certificate_lists(message)
            final_report = _final_report(message, ruleset)
    return Analysis(message=message, smime=smime, automatic=automatic, form=form,
                    command_lines=command_lines, certificate_lists=certificate_lists,
                    final_report=final_report, problems=problems, answers=answers,
                    envelope_from=envelope_from)


def _certificate_lists(message: ParsedMessage) -> list[Attachment]:
    try:
        from bot.parse.certlists.read import looks_like_certificate_list
    except ImportError:  # the list parser lands separately
        return []
    lists = []
    for attachment in message.attachments:
        # A stream: a large list lifted out of the message is not decoded whole here.
        with attachment.open() as stream:
            if looks_like_certificate_list(attachment.filename, attachment.content_type,
                                           stream):
                lists.append(attachment)
    return lists


def _final_report(message: ParsedMessage, ruleset: object) -> object | None:
    try:
        from bot.parse.forms.reporttext import find_final_report
    except ImportError:  # the report checker lands separately
        return None
    # Body and .txt/.md/.docx/PDF attachments, items united (R4).
    return find_final_report(message, ruleset)  # type: ignore[arg-type]
