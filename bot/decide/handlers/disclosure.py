"""Public disclosure (ruleset 2026-02): record the Bugzilla link a CA gives for its incident.

The 2026-02 text asks the CA to disclose the incident publicly in the CCADB
incident-report format on Bugzilla. Any CA mail in the incident's thread that
carries a bug link records it (and a later, different link is recorded as a
change); the acknowledgement asks for it and the staff digest lists open
incidents that still have none.
"""

from __future__ import annotations

import re

from sqlmodel import Session

from bot.context import Context
from bot.decide.classify import ROLE_CA, Classification
from bot.decide.incident.deadlines import close_deadline, open_deadline
from bot.rules.events import EventKind
from bot.rules.rulesets import get_ruleset
from bot.service.analysis import Analysis
from storage import queries
from storage.models import DL_SATISFIED, Event, InboundMessage, Incident

# Bugzilla bug links as CAs paste them: the full show_bug URL, or the short form.
BUG_LINK = re.compile(
    r"https?://(?:bugzilla\.mozilla\.org/show_bug\.cgi\?id=|bugzil\.la/)(\d{4,9})\b",
    re.IGNORECASE)
RULE = "2026-02 disclosure"
KIND = "public-disclosure"


def open_disclosure_deadline(session: Session, incident: Incident, inbound_id: int | None
                             ) -> None:
    """A new incident of a disclosing ruleset: the link is due from the notification's receipt."""
    within = get_ruleset(incident.ruleset).public_disclosure_within
    if not get_ruleset(incident.ruleset).public_disclosure_required or within is None:
        return
    open_deadline(session, incident, KIND, incident.notified_at + within, incident.notified_at,
                  inbound_id=inbound_id)


def bug_link(text: str) -> str | None:
    """The first Bugzilla bug in `text`, as its canonical URL."""
    found = BUG_LINK.search(text or "")
    return f"https://bugzilla.mozilla.org/show_bug.cgi?id={found.group(1)}" if found else None


def record_disclosure(session: Session, ctx: Context, inbound: InboundMessage,
                      analysis: Analysis, cls: Classification) -> None:
    """A CA's mail in its own incident that names a bug records it.

    Runs before the mail's handler when the mail is in an incident (its
    receipt then says the link was recorded, `cls.recorded`), and after it,
    for the notification that opened the incident.
    """
    if cls.role != ROLE_CA or inbound.incident_id is None or cls.ca is None:
        return
    # The text first: most mail names no bug, and looking the incident up
    # flushes the transaction's pending rows.
    link = bug_link(analysis.message.text_plain) or bug_link(analysis.message.text_html)
    if link is None:
        return
    incident = session.get(Incident, inbound.incident_id)
    if incident is None or incident.ca != cls.ca.name or link == incident.public_disclosure:
        return
    previous = incident.public_disclosure
    incident.public_disclosure = link
    session.add(incident)
    session.add(Event(
        incident_id=incident.id, at=inbound.received_at, kind=EventKind.PUBLIC_DISCLOSURE,
        rule=RULE, inbound_id=inbound.id,
        summary=(f"public disclosure changed from {previous} to {link}" if previous
                 else f"public disclosure: {link}")))
    cls.recorded.append(f"Public disclosure recorded: {link}")
    for row in queries.open_deadlines(session, incident.id):
        if row.kind == KIND:
            close_deadline(session, row, DL_SATISFIED, inbound.received_at,
                           f"bug link {link} received", inbound.id)
