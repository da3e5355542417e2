"""A CA's update in the thread: satisfy the deadlines it fits, then record it with a receipt."""

from __future__ import annotations

from sqlmodel import Session

from bot.context import Context
from bot.decide.classify import Classification
from bot.decide.handlers.incidents import apply_update
from bot.decide.handlers.resolution import propose_if_claimed
from bot.decide.incident.deadlines import satisfy
from bot.service.analysis import Analysis
from storage.models import InboundMessage


def hint_text(analysis: Analysis) -> str:
    """Subject and attachment names: what says which report a mail is (R5)."""
    message = analysis.message
    return " ".join([message.subject or "", *(a.filename for a in message.attachments)])


def handle_update(session: Session, ctx: Context, inbound: InboundMessage, analysis: Analysis,
                  cls: Classification) -> None:
    assert cls.incident is not None
    satisfied = satisfy(session, cls.incident, cls.kind, inbound, inbound.received_at,
                        hint_text=hint_text(analysis))
    if propose_if_claimed(session, ctx, cls.incident, inbound, analysis):
        cls.recorded.append("You say the incident is resolved: the program's staff were asked "
                            "to confirm it.")
    apply_update(session, ctx, cls.incident, inbound, analysis, cls, satisfied=satisfied)
