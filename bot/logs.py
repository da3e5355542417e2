"""Logging set-up: plain lines by default, JSON lines with --log-json, one line per state change.

Every stage logs its own mail in and out (intake: "stored message N"; decide:
"message N (<Message-ID>) … in INC-…"; outbox: "queued/sent KIND <Message-ID>
for INC-…"). State changes are logged here, once, from the timeline itself:
each `Event` committed to the database becomes one line on the
`rootnotify.timeline` logger, so a stage cannot change an incident without it
showing in the log, and a rolled-back change never does.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from storage.models import Event

timeline_log = logging.getLogger("rootnotify.timeline")

# Record attributes (passed with `extra=`) copied into JSON lines as fields.
FIELDS = ("incident", "inbound", "outbound", "message_id", "event", "rule", "command")
_PENDING = "rootnotify_pending_events"


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _collect(session: Session, _flush_context: object) -> None:
    # Values are copied now: after the commit the objects are expired, and
    # reading them would query the database from inside the commit hook.
    pending = session.info.setdefault(_PENDING, [])
    for obj in session.new:
        if isinstance(obj, Event):
            pending.append({"incident": obj.incident_id, "event": obj.kind, "rule": obj.rule,
                            "inbound": obj.inbound_id, "outbound": obj.outbound_id,
                            "command": obj.command, "summary": obj.summary})


def note_events(session: Session, events: list[dict[str, Any]]) -> None:
    """Events written without ORM objects (a bulk INSERT): logged at commit like the others.

    Each dict holds the Event's columns (incident_id, kind, rule, inbound_id,
    outbound_id, command, summary).
    """
    session.info.setdefault(_PENDING, []).extend(
        {"incident": e.get("incident_id"), "event": e.get("kind"), "rule": e.get("rule"),
         "inbound": e.get("inbound_id"), "outbound": e.get("outbound_id"),
         "command": e.get("command"), "summary": e.get("summary")} for e in events)


def _emit(session: Session) -> None:
    for e in session.info.pop(_PENDING, []):
        cause = (f" (message {e['inbound']})" if e["inbound"] is not None else
                 f" (outgoing {e['outbound']})" if e["outbound"] is not None else "")
        timeline_log.info("%s %s%s: %s", e["incident"] or "-", e["event"], cause,
                          e["summary"], extra={k: v for k, v in e.items() if k != "summary"})


def _discard(session: Session) -> None:
    session.info.pop(_PENDING, None)


def log_timeline_events() -> None:
    """Log every committed timeline event; idempotent, so calling it twice logs once."""
    for name, hook in (("after_flush", _collect), ("after_commit", _emit),
                       ("after_rollback", _discard)):
        if not event.contains(Session, name, hook):
            event.listen(Session, name, hook)


def setup_logging(json_lines: bool = False, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every SMTP line at INFO; our own lines say what matters.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # Alembic says seven INFO lines on every start; our own line says when
    # the schema is upgraded (rootnotify.storage).
    logging.getLogger("alembic").setLevel(logging.DEBUG if level <= logging.DEBUG
                                          else logging.WARNING)
    log_timeline_events()
