"""`rootnotify message N`: one stored mail as a person reads it.

Its headers, its MIME parts, what the bot understood from it (kind, sender,
CA, incident, form answers), the S/MIME verdict, the decision (the events it
caused, the mails sent because of it) and its processing state.
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message
from typing import Any, TextIO

from sqlmodel import Session, col, select

from bot.clock import iso
from bot.errors import OperatorError
from storage.models import Event, FormValue, InboundMessage, OutboundMessage
from storage.rawstore import load_raws

# Header fields shown in the text view, in this order (all of them in --json).
SHOWN_HEADERS = ("From", "Sender", "To", "Cc", "Subject", "Date", "Message-ID",
                 "In-Reply-To", "Auto-Submitted", "Content-Type")
# Parts listed at most; a hostile mail may have thousands.
PARTS_SHOWN = 50


def raw_message(session: Session, inbound_id: int) -> bytes:
    raw = load_raws(session, [inbound_id]).get(inbound_id)
    if raw is None:
        raise OperatorError(f"no message {inbound_id}")
    return raw


def _parts(msg: Message) -> list[dict[str, Any]]:
    parts = []
    for part in msg.walk():
        if len(parts) >= PARTS_SHOWN:
            break
        payload = part.get_payload(decode=True) if not part.is_multipart() else None
        parts.append({"content_type": part.get_content_type(),
                      "filename": part.get_filename(),
                      "size": len(payload) if payload is not None else None})
    return parts


def message_json(session: Session, inbound_id: int) -> dict[str, Any]:
    inbound = session.get(InboundMessage, inbound_id)
    if inbound is None:
        raise OperatorError(f"no message {inbound_id} (the numbers are in rootnotify status, "
                            "show and quarantine)")
    msg = email.message_from_bytes(raw_message(session, inbound_id),
                                   policy=email.policy.compat32)
    form = session.exec(select(FormValue).where(FormValue.inbound_id == inbound_id)
                        .order_by(col(FormValue.id))).all()
    events = session.exec(select(Event).where(Event.inbound_id == inbound_id)
                          .order_by(col(Event.at), col(Event.id))).all()
    replies = session.exec(select(OutboundMessage).where(OutboundMessage.inbound_id
                                                         == inbound_id)
                           .order_by(col(OutboundMessage.id))).all()
    return {
        "id": inbound.id, "message_id": inbound.message_id, "channel": inbound.channel,
        "received_at": iso(inbound.received_at), "size": inbound.size,
        "sha256": inbound.sha256, "envelope_from": inbound.envelope_from,
        "headers": [[name, str(value)] for name, value in msg.items()],
        "parts": _parts(msg),
        "understood": {"kind": inbound.kind, "sender_role": inbound.sender_role,
                       "from": inbound.from_address, "ca": inbound.ca,
                       "incident": inbound.incident_id, "quarantined": inbound.quarantined,
                       "form": {v.key: v.value for v in form}},
        "smime": {"result": inbound.smime, "reason": inbound.smime_reason},
        "state": inbound.state, "attempts": inbound.attempts,
        "last_error": inbound.last_error, "note": inbound.note,
        "processed_at": iso(inbound.processed_at),
        "events": [{"at": iso(e.at), "kind": e.kind, "rule": e.rule, "incident": e.incident_id,
                    "summary": e.summary} for e in events],
        "replies": [{"id": o.id, "kind": o.kind, "status": o.status, "to": o.recipients,
                     "subject": o.subject, "message_id": o.message_id} for o in replies],
    }


def print_message(data: dict[str, Any], stream: TextIO) -> None:
    """Plain lines, never wrapped: an operator greps them or pastes them into a ticket."""
    def out(text: str = "") -> None:
        stream.write(text + "\n")

    out(f"message {data['id']}: {data['state']}"
        + (f" after {data['attempts']} attempt(s)" if data["attempts"] else "")
        + f"; received {data['received_at']} by {data['channel']}, {data['size']} bytes, "
        f"SHA-256 {data['sha256']}")
    if data["last_error"]:
        out(f"last error: {data['last_error']}")
    if data["note"]:
        out(f"note: {data['note']}")
    out()
    out("headers:")
    for name, value in data["headers"]:
        if name.lower() in {h.lower() for h in SHOWN_HEADERS}:
            out(f"  {name}: {' '.join(value.split())}")
    out("parts:")
    for part in data["parts"]:
        size = f", {part['size']} bytes" if part["size"] is not None else ""
        name = f" {part['filename']!r}" if part["filename"] else ""
        out(f"  {part['content_type']}{name}{size}")
    u = data["understood"]
    out()
    out(f"understood: {u['kind'] or '(not yet processed)'} from {u['from'] or '-'} "
        f"({u['sender_role'] or '-'}{', ' + u['ca'] if u['ca'] else ''})"
        + (f" in {u['incident']}" if u["incident"] else "")
        + (", quarantined" if u["quarantined"] else ""))
    smime = data["smime"]
    out(f"S/MIME: {smime['result'] or '-'}" + (f" ({smime['reason']})" if smime["reason"]
                                               else ""))
    for key, value in u["form"].items():
        out(f"  form {key}: {' '.join(value.split())[:200]}")
    out("decision:")
    if not data["events"] and not data["replies"]:
        out("  nothing recorded")
    for e in data["events"]:
        out(f"  {e['at']} {e['incident'] or '-'} {e['kind']}"
            + (f" [{e['rule']}]" if e["rule"] else "") + f": {e['summary']}")
    for r in data["replies"]:
        out(f"  sent {r['kind']} ({r['status']}) to {r['to']}: {r['subject']}")
