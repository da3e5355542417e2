"""The final report (R4): store its items, answer with the checklist, satisfy it when complete.

A report with items missing leaves the `final-report` deadline open; a later
report supplying them completes it (the items are united over every report
received), and `/accept final-report` lets staff close it regardless.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from bot.compose.addressing import to_sender
from bot.compose.replies import allow_auto_reply
from bot.context import Context
from bot.decide.classify import Classification
from bot.decide.handlers.resolution import end_updates
from bot.decide.handlers.updates import hint_text
from bot.decide.incident.deadlines import satisfy
from bot.parse.forms.reports import ReportCheck
from bot.parse.forms.reporttext import find_final_report
from bot.rules.events import EventKind
from bot.rules.rulesets import get_ruleset
from bot.service.analysis import Analysis
from storage import queries
from storage.models import Event, FinalReport, InboundMessage, comma_list

log = logging.getLogger("rootnotify.decide.reports")


def handle_final_report(session: Session, ctx: Context, inbound: InboundMessage,
                        analysis: Analysis, cls: Classification) -> None:
    incident = cls.incident
    assert incident is not None and cls.ca is not None
    ruleset = get_ruleset(incident.ruleset)
    check = analysis.final_report
    if not isinstance(check, ReportCheck) or ruleset.name != ctx.config.bot.ruleset.name:
        check = find_final_report(analysis.message, ruleset) or check
    assert isinstance(check, ReportCheck)
    now = inbound.received_at
    earlier: set[str] = set()
    for row in queries.final_reports(session, incident.id):
        earlier.update(comma_list(row.present))
    session.add(FinalReport(incident_id=incident.id, inbound_id=inbound.id or 0,
                            received_at=now, present=",".join(check.present),
                            missing=",".join(check.missing)))
    have = earlier | set(check.present)
    items = [{"number": i.number, "title": i.title, "key": i.key,
              "present": i.key in have, "earlier": i.key in earlier and i.key not in check.present}
             for i in ruleset.final_report_items]
    missing = [i for i in items if not i["present"]]
    satisfied = satisfy(session, incident, "final-report", inbound, now, complete=not missing,
                        hint_text=hint_text(analysis))
    if not missing:  # R3 2026-02: nothing is left to send daily updates about
        end_updates(session, incident, now, "the final report is complete", inbound.id)
    session.add(Event(incident_id=incident.id, at=now,
                      kind=EventKind.FINAL_REPORT_RECEIVED, rule="R4",
                      inbound_id=inbound.id,
                      summary=f"final report: {len(check.present)} of {len(items)} items in "
                              f"this mail; {len(missing)} still missing"
                              + (f" ({', '.join(str(i['key']) for i in missing)})"
                                 if missing else " — complete")))
    sender = analysis.message.from_address or ""
    if allow_auto_reply(session, ctx, sender, what="final report receipt",
                        incident_id=incident.id, inbound_id=inbound.id):
        to_sender(session, ctx, "receipt", "final-report-receipt.txt.j2", sender,
                  analysis.message.message_id, analysis.message.references, incident=incident,
                  inbound_id=inbound.id, ca_name=cls.ca.name, received_at=now, items=items,
                  missing=missing, satisfied=satisfied, recorded=cls.recorded)
    log.info("final report for %s from message %s: %d missing", incident.id, inbound.id,
             len(missing))
