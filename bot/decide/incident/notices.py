"""Written notice before acting against a CA (P1, M1): resolving ROOT, the notice mail as evidence.

The notice mail is the writing M1 asks for: its Message-ID, time and
recipients are kept in a `Notice` row, and a `notice-period` deadline ends
on the action date, when staff are reminded.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import Session

from bot.compose.addressing import to_ca
from bot.context import Context
from bot.decide.handlers.proposals import answer_open
from bot.decide.incident.deadlines import open_deadline
from bot.errors import CommandError
from bot.rules.events import EventKind
from bot.rules.rulesets import get_ruleset
from bot.trust import Root
from storage.models import Event, Incident, Notice

# A shorter fingerprint prefix matches too many roots by chance to name one.
MIN_PREFIX_HEX = 8
SHA256_HEX = 64
_HEX = re.compile(r"[0-9a-f]+")


def resolve_root(roots: tuple[Root, ...], target: str) -> Root:
    """ROOT as staff wrote it: SHA-256 (any case, colons), a unique prefix, or the subject CN."""
    text = target.strip()
    compact = text.replace(":", "").replace(" ", "").lower()
    if len(compact) >= MIN_PREFIX_HEX and _HEX.fullmatch(compact):
        found = [r for r in roots if r.sha256.startswith(compact)]
        if len(found) == 1 and len(compact) <= SHA256_HEX:
            return found[0]
        if len(found) > 1:
            raise CommandError(f"'{text}' matches {len(found)} roots; give more digits")
    named = [r for r in roots if r.name.lower() == text.lower()]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise CommandError(f"'{text}' names {len(named)} roots; use the SHA-256 instead")
    known = "; ".join(f"{r.name} ({r.sha256[:16]}…)" for r in roots) or "none configured"
    raise CommandError(f"unknown root '{text}' for this CA (its roots: {known})")


def give_notice(session: Session, ctx: Context, incident: Incident, root: Root,
                effective_at: datetime, now: datetime, *, inbound_id: int | None,
                command: str) -> Notice:
    ruleset = get_ruleset(incident.ruleset)
    out = to_ca(session, ctx, incident, "notice", "notice.txt.j2", inbound_id=inbound_id,
                root=root, effective_at=effective_at, exceptional=incident.exceptional,
                action=ruleset.revoke_wording, now=now)
    notice = Notice(incident_id=incident.id, action="revoke-root", target=root.name,
                    target_sha256=root.sha256, effective_at=effective_at,
                    exceptional=incident.exceptional, sent_at=now,
                    message_id=out.message_id if out else "",
                    recipients=out.recipients if out else "",
                    outbound_id=out.id if out else None)
    session.add(notice)
    open_deadline(session, incident, "notice-period", effective_at, now,
                  text=f"{ruleset.revoke_wording} root {root.name}", inbound_id=inbound_id,
                  command=command)
    session.add(Event(incident_id=incident.id, at=now, kind=EventKind.NOTICE_GIVEN, rule="P1",
                      inbound_id=inbound_id, command=command,
                      summary=f"notice to {ruleset.revoke_wording} root {root.name} "
                              f"({root.sha256[:16]}…) on {effective_at:%Y-%m-%d %H:%M} UTC"
                              f"{' (exceptional)' if incident.exceptional else ''}; "
                              f"sent to {notice.recipients} as {notice.message_id}"))
    answer_open(session, incident, now, "staff gave a new notice", inbound_id, command)
    return notice
