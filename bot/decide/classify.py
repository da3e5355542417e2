"""Who sent a stored message, which incident it belongs to, and what kind it is.

The kinds are the contract's inbound kinds. The order of the checks is the
policy: automatic mail first (never answered), then the sender's role, then
the thread, then what the content is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from bot.config import CaConfig, Config
from bot.rules.senders import ANY_SENDER, CA_CONTACT, first_doubt
from bot.service.analysis import Analysis
from storage.models import InboundMessage, Incident, Notice, OutboundMessage

ROLE_CA = "ca"
ROLE_STAFF = "staff"
ROLE_UNKNOWN = "unknown"
ROLE_SYSTEM = "system"  # bounces and other automatic mail


@dataclass
class Classification:
    role: str
    ca: CaConfig | None
    incident: Incident | None
    kind: str
    reason: str
    replies_to_notice: bool = False
    # What acting on the mail recorded before its handler ran, for its receipt.
    recorded: list[str] = field(default_factory=list)
    # Set when the From cannot be taken as the sender (bot.rules.senders): staff are told.
    doubtful_sender: bool = False


def tag_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"\[\s*({re.escape(prefix)}-\d{{4}}-\d{{4,}})\s*\]", re.IGNORECASE)


def find_incident(session: Session, config: Config, analysis: Analysis) -> Incident | None:
    """By the subject tag first, else by the thread (In-Reply-To, References)."""
    message = analysis.message
    match = tag_pattern(config.bot.incident_prefix).search(message.subject or "")
    if match:
        found = session.get(Incident, match.group(1).upper())
        if found is not None:
            return found
    ids = message.thread_ids
    if not ids:
        return None
    out = session.exec(select(OutboundMessage.incident_id).where(
        col(OutboundMessage.message_id).in_(ids), col(OutboundMessage.incident_id).is_not(None)
    )).first()
    incident_id = out
    if incident_id is None:
        incident_id = session.exec(select(InboundMessage.incident_id).where(
            col(InboundMessage.message_id).in_(ids),
            col(InboundMessage.incident_id).is_not(None),
        )).first()
    return session.get(Incident, incident_id) if incident_id else None


def replies_to_notice(session: Session, analysis: Analysis) -> bool:
    ids = analysis.message.thread_ids
    if not ids:
        return False
    found = session.exec(select(Notice.id).where(col(Notice.message_id).in_(ids))).first()
    return found is not None


def classify(session: Session, config: Config, analysis: Analysis) -> Classification:
    message = analysis.message
    sender = message.from_address
    incident = find_incident(session, config, analysis)
    verdict = analysis.automatic
    if verdict.kind is not None:
        kind = "bounce" if verdict.kind == "bounce" else "auto-reply"
        return Classification(ROLE_SYSTEM, None, incident, kind, verdict.reason or verdict.kind)

    doubt = first_doubt(ANY_SENDER, message, analysis.envelope_from)
    if doubt is None and config.ca_for_address(sender) is not None:
        doubt = first_doubt(CA_CONTACT, message, analysis.envelope_from)
    if doubt is not None:
        return Classification(ROLE_UNKNOWN, None, incident, "other",
                              f"not taken as {sender}: {doubt}", doubtful_sender=True)

    if config.is_staff(sender):
        if analysis.command_lines:
            return Classification(ROLE_STAFF, None, incident, "command",
                                  "staff mail with commands")
        return Classification(ROLE_STAFF, None, incident, "other", "staff mail without commands")

    ca = config.ca_for_address(sender)
    if ca is None:
        return Classification(ROLE_UNKNOWN, None, incident, "other",
                              f"sender {sender or '(none)'} is no CA contact or staff")

    if analysis.smime.status == "encrypted":  # unreadable: recorded, staff told, nobody answered
        return Classification(ROLE_CA, ca, incident, "other",
                              "encrypted mail, and no decryption key to open it")
    if incident is None:
        if analysis.form is not None:
            return Classification(ROLE_CA, ca, None, "notification", "form found")
        return Classification(ROLE_CA, ca, None, "form-request",
                              "no form found in a mail outside any incident")

    if incident.ca != ca.name:
        return Classification(ROLE_CA, ca, incident, "other",
                              f"{sender} of {ca.name} wrote in {incident.ca}'s incident")
    if analysis.certificate_lists:
        return Classification(ROLE_CA, ca, incident, "certificate-list", "certificate list")
    if analysis.final_report is not None:
        return Classification(ROLE_CA, ca, incident, "final-report", "final report")
    if replies_to_notice(session, analysis):
        return Classification(ROLE_CA, ca, incident, "proposal", "reply to a notice",
                              replies_to_notice=True)
    return Classification(ROLE_CA, ca, incident, "update", "reply in the incident's thread")
