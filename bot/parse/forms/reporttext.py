"""A final report (R4) across a whole mail: the body and each readable attachment, items united.

Each text is checked on its own (a covering note in the body must not shift
the attachment's numbering), and an item counts as present when any text has
it. Pure: a parsed message in, a `ReportCheck` out; never raises.
"""

from __future__ import annotations

from bot.parse.forms.documents import extract_attachment_text
from bot.parse.forms.reports import ReportCheck, check_final_report, looks_like_final_report
from bot.parse.mail.message import ParsedMessage
from bot.rules.rulesets import Ruleset

# Attachments read for report items: the contract's .txt/.md/.docx/PDF, and HTML.
REPORT_KINDS = ("text", "docx", "pdf", "html")


def report_texts(message: ParsedMessage) -> list[tuple[str, str]]:
    """(source, text) for the body and every attachment whose text can be read."""
    texts = [("body", message.text_plain or "")]
    for attachment in message.attachments:
        doc = extract_attachment_text(attachment)
        if doc.kind in REPORT_KINDS and doc.text.strip():
            texts.append((attachment.filename or doc.kind, doc.text))
    return texts


def merge(checks: list[ReportCheck], ruleset: Ruleset) -> ReportCheck:
    keys = ruleset.report_item_keys()
    present = {k for c in checks for k in c.present}
    sections: dict[str, str] = {}
    for check in checks:
        for key, text in check.sections.items():
            if key in check.present or key not in sections:
                sections[key] = text
    return ReportCheck(present=tuple(k for k in keys if k in present),
                       missing=tuple(k for k in keys if k not in present),
                       sections=sections, numbered=any(c.numbered for c in checks))


def find_final_report(message: ParsedMessage, ruleset: Ruleset) -> ReportCheck | None:
    """The united check when the mail is a final report (subject, attachment name, items)."""
    texts = report_texts(message)
    names = [a.filename for a in message.attachments]
    subject = message.subject or ""
    if not any(looks_like_final_report(subject, names, text, ruleset) for _, text in texts):
        return None
    return merge([check_final_report(text, ruleset) for _, text in texts], ruleset)
