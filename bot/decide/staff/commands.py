"""Staff commands in a mail: authenticate, check every line, then execute all or none.

The order is the policy. A mail that fails `[staff] auth` changes nothing,
gets no reply, and is recorded (an event and the message's note) for the
next digest. A mail whose signature holds but may not count here (a replay,
a stale signing time, another incident's text: bot.decide.staff.replay) changes
nothing and is answered and told to staff. A mail with any unknown,
malformed or impossible command (a date in the past, an unknown root, a
notice sooner than 7 days) changes nothing and is answered with the errors
and the valid forms; otherwise every command runs, in order, in the
message's transaction, and one confirmation lists what each did.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session

from bot.clock import as_utc
from bot.compose.addressing import to_sender
from bot.context import Context
from bot.decide.classify import Classification
from bot.decide.incident.notices import resolve_root
from bot.decide.staff.actions import ACTIONS, Run, Step
from bot.decide.staff.auth import authenticate
from bot.decide.staff.digest import UNAUTHENTICATED_EVENT
from bot.decide.staff.merge import other_incident
from bot.decide.staff.replay import Use, record_use, refusal, refuse
from bot.errors import CommandError
from bot.parse.commands import Command, CommandProblem, parse_commands
from bot.rules.commands import usage_lines
from bot.rules.deadlines import NOTICE_PERIOD, REQUEST_KINDS
from bot.rules.events import EventKind
from bot.rules.rulesets import get_ruleset
from bot.service.analysis import Analysis
from storage.models import Event, InboundMessage, Incident

log = logging.getLogger("rootnotify.decide.commands")

# On a closed incident only these make sense; anything else asks for /reopen first.
ALLOWED_WHEN_CLOSED = ("reopen", "status", "note", "close")


@dataclass
class _State:
    """What earlier commands of the same mail change that later checks depend on."""

    exceptional: bool
    status: str
    merged: set[str] = field(default_factory=set)


def handle_command(session: Session, ctx: Context, inbound: InboundMessage, analysis: Analysis,
                   cls: Classification) -> None:
    incident = cls.incident
    sender = analysis.message.from_address or ""
    auth = authenticate(session, ctx, inbound, analysis)
    if not auth.ok:
        _unauthenticated(session, inbound, incident, sender, auth.reason)
        return
    reply = dict(sender=sender, in_reply_to=analysis.message.message_id,
                 references=analysis.message.references, incident=incident,
                 inbound_id=inbound.id)
    use = Use(inbound=inbound, incident=incident, auth=auth)
    refused = refusal(session, ctx, use)
    if refused:
        refuse(session, ctx, use, sender, refused, reply)
        return
    record_use(session, ctx, use, sender)
    # The mail's receipt, not the time it is processed (R3, R5): a backlog, `ingest` of
    # old mail or `reprocess` must judge and date its commands as live SMTP did.
    now = as_utc(inbound.received_at)
    parsed = parse_commands(analysis.body_text, ctx.config.bot.timezone)
    problems = [p for p in parsed if isinstance(p, CommandProblem)]
    commands = [c for c in parsed if isinstance(c, Command)]
    steps: list[Step] = []
    if not problems:
        steps, problems = _check(session, ctx, incident, commands, now)
    if problems:
        inbound.note = f"commands refused: {len(problems)} error(s); nothing changed"
        if incident is not None:
            session.add(Event(incident_id=incident.id, at=now, kind=EventKind.COMMANDS_REFUSED,
                              inbound_id=inbound.id, summary=f"{len(problems)} error(s) in "
                              f"commands from {sender}; nothing changed",
                              data=json.dumps([p.error for p in problems])))
        to_sender(session, ctx, "error", "command-error.txt.j2", problems=problems,
                  accepted=commands, usage=usage_lines(), **reply)  # type: ignore[arg-type]
        return
    run = Run(ctx=ctx, session=session, incident=incident, inbound_id=inbound.id,
              sender=sender, now=now)
    results = [(step.command.line, ACTIONS[(step.command.name, step.command.what)](run, step))
               for step in steps]
    inbound.note = f"{len(steps)} command(s) executed ({auth.reason})"
    to_sender(session, ctx, "confirmation", "command-confirmation.txt.j2", results=results,
              **reply)  # type: ignore[arg-type]
    log.info("message %s: %d command(s) from %s executed%s", inbound.id, len(steps), sender,
             f" in {incident.id}" if incident else "")


def _unauthenticated(session: Session, inbound: InboundMessage, incident: Incident | None,
                     sender: str, reason: str) -> None:
    inbound.note = f"unauthenticated staff command, ignored: {reason}"[:2000]
    session.add(Event(incident_id=incident.id if incident else None, at=inbound.received_at,
                      kind=UNAUTHENTICATED_EVENT, inbound_id=inbound.id,
                      summary=f"commands from {sender} not authenticated ({reason}); "
                              f"nothing changed"))
    log.warning("message %s: staff commands from %s refused: %s", inbound.id, sender, reason)


def _check(session: Session, ctx: Context, incident: Incident | None,
           commands: list[Command], now: datetime) -> tuple[list[Step], list[CommandProblem]]:
    state = _State(exceptional=bool(incident and incident.exceptional),
                   status=incident.status if incident else "open")
    steps, problems = [], []
    for cmd in commands:
        try:
            steps.append(_check_one(session, ctx, incident, cmd, state, now))
        except CommandError as exc:
            problems.append(CommandProblem(cmd.line, str(exc), usage_lines(cmd.name)))
    return steps, problems


def _check_one(session: Session, ctx: Context, incident: Incident | None, cmd: Command,
               state: _State, now: datetime) -> Step:
    if incident is None:
        if cmd.needs_incident:
            raise CommandError("this command needs an incident: reply in its thread or put "
                               f"[{ctx.config.bot.incident_prefix}-YYYY-NNNN] in the subject")
        return Step(cmd)
    if state.status == "closed" and cmd.name not in ALLOWED_WHEN_CLOSED:
        raise CommandError(f"{incident.id} is closed; send /reopen first")
    if cmd.name == "close":
        state.status = "closed"
    elif cmd.name == "reopen":
        state.status = "open"
    elif cmd.name == "exceptional":
        state.exceptional = cmd.what == "on"
    elif cmd.name == "request":
        if cmd.what == "reports":
            assert cmd.every is not None
            return Step(cmd, due=now + cmd.every)
        due = cmd.due
        if due is None:
            # R2/R5: an undated request is due only when the ruleset gives a period.
            period = get_ruleset(incident.ruleset).undated_request_period(
                REQUEST_KINDS[cmd.what or ""])
            return Step(cmd, due=now + period if period else None)
        if due <= now:
            raise CommandError(f"the due date {due:%Y-%m-%d %H:%M} UTC is in the past")
        return Step(cmd, due=due)
    elif cmd.name == "notice":
        return _check_notice(ctx, incident, cmd, state, now)
    elif cmd.name == "merge":
        other = other_incident(session, incident, cmd.target or "",
                               ctx.config.bot.incident_prefix)
        if other.id in state.merged:
            raise CommandError(f"{other.id} is named twice")
        state.merged.add(other.id)
        return Step(cmd, other=other)
    return Step(cmd)


def _check_notice(ctx: Context, incident: Incident, cmd: Command, state: _State,
                  now: datetime) -> Step:
    root = resolve_root(ctx.trust.roots.get(incident.ca, ()), cmd.target or "")
    earliest = now + NOTICE_PERIOD
    effective = cmd.due or (now if state.exceptional else earliest)
    if effective < now:
        raise CommandError(f"the action date {effective:%Y-%m-%d %H:%M} UTC is in the past")
    if not state.exceptional and effective < earliest:
        raise CommandError(
            f"the action date {effective:%Y-%m-%d %H:%M} UTC is less than 7 days away; the "
            f"earliest is {earliest:%Y-%m-%d %H:%M} UTC (P1), unless the incident is marked "
            f"exceptional with /exceptional on")
    return Step(cmd, due=effective, root=root)


