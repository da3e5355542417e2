"""Fetch a batch's bodies and INTERNALDATEs with one UID FETCH, parsed without a general lexer.

imapclient parses every FETCH response with a general IMAP lexer, byte by
byte in Python, and every INTERNALDATE through `email.utils`: on 2 KB messages
that was ~45 µs a message, more than the store, and it runs under the GIL that
the writer thread (bot/intake/imap/onepass.py) needs at the same time. The answer
to exactly what we ask is regular, so it is matched whole:

    * 7 FETCH (UID 7 INTERNALDATE "26-Nov-2026 12:00:00 +0000" BODY[] {1749}
    <1749 octets>)

Anything else in the answer (another item order, an unsolicited FLAGS update,
a quoted body) sends the whole batch through imapclient's own parser, so the
fast path is never the only one that understands the server.
"""

from __future__ import annotations

import imaplib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from imapclient import IMAPClient
from imapclient.response_parser import parse_fetch_response

# What a batch comes back as: UID -> (raw message, INTERNALDATE in UTC or None).
Bodies = dict[int, tuple[bytes, datetime | None]]
# The items asked for, in the order Dovecot (and most servers) answer them.
FETCH_ITEMS = "(UID INTERNALDATE BODY.PEEK[])"
_HEAD = re.compile(rb'\d+ \(UID (\d+) INTERNALDATE "([^"]+)" BODY\[\] \{\d+\}')
# RFC 3501 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz", the day maybe space-padded.
_DATE = re.compile(rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_MONTHS = {m: i for i, m in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
     b"dec"), start=1)}


@dataclass
class PendingFetch:
    """A UID FETCH sent and not yet read (`tag`), or already answered (`bodies`)."""

    uid_set: str
    tag: str | None = None
    bodies: Bodies | None = None


def fetch_bodies(client: IMAPClient, uid_set: str) -> Bodies:
    """UID -> (raw message, INTERNALDATE in UTC or None) for the UIDs still there."""
    return finish_fetch(client, start_fetch(client, uid_set))


def start_fetch(client: IMAPClient, uid_set: str) -> PendingFetch:
    """Send the UID FETCH without waiting for its answer (read it with `finish_fetch`).

    Sending the next batch's FETCH before reading this one's answer lets the
    server produce batch k+1 while we read and parse batch k, instead of each
    side waiting for the other once per batch. The server answers commands in
    the order sent, so each answer is read whole before the next. Until it is
    read, no other command may be sent on this connection: imaplib files every
    untagged FETCH under one name, and another command's reply would take it.
    """
    imap = getattr(client, "_imap", None)
    if not isinstance(imap, imaplib.IMAP4):  # not a plain imapclient: its own fetch, now
        parsed = client.fetch(uid_set, [b"BODY.PEEK[]", b"INTERNALDATE"])
        return PendingFetch(uid_set, bodies=_from_parsed(parsed))
    return PendingFetch(uid_set, tag=imap._command("UID", "FETCH", uid_set, FETCH_ITEMS))


def finish_fetch(client: IMAPClient, pending: PendingFetch) -> Bodies:
    """The answer to `pending`: UID -> (raw message, INTERNALDATE in UTC or None)."""
    if pending.bodies is not None or pending.tag is None:
        return pending.bodies or {}
    imap: imaplib.IMAP4 = client._imap
    typ, data = imap._untagged_response(*imap._command_complete("UID", pending.tag), "FETCH")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID FETCH failed: {data!r}")
    fast = _parse(data)
    if fast is not None:
        return fast
    return _from_parsed(parse_fetch_response(data, normalise_times=False, uid_is_key=True))


def _parse(data: list[object]) -> Bodies | None:
    """The regular answer, or None when any part of it is not that shape."""
    found: Bodies = {}
    dates: dict[bytes, datetime | None] = {}  # a batch's messages often share the second
    items = iter(data)
    for item in items:
        if item is None:  # imaplib's "no untagged FETCH": nothing left in the folder
            continue
        if not isinstance(item, tuple) or len(item) != 2:
            return None
        head, body = item
        match = _HEAD.fullmatch(head) if isinstance(head, bytes) else None
        if match is None or not isinstance(body, bytes) or next(items, None) != b")":
            return None
        stamp = match.group(2)
        if stamp not in dates:
            dates[stamp] = parse_internaldate(stamp)
        found[int(match.group(1))] = (body, dates[stamp])
    return found


def parse_internaldate(text: bytes) -> datetime | None:
    """RFC 3501 date-time in UTC; None if malformed (the caller uses its clock)."""
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    day, month, year, hour, minute, second, sign, off_h, off_m = match.groups()
    number = _MONTHS.get(month.lower())
    if number is None:
        return None
    offset = timedelta(hours=int(off_h), minutes=int(off_m))
    try:
        local = datetime(int(year), number, int(day), int(hour), int(minute), int(second),
                         tzinfo=timezone(-offset if sign == b"-" else offset))
    except ValueError:
        return None
    return local.astimezone(UTC)


def _from_parsed(parsed: dict[int, dict[bytes, object]]) -> Bodies:
    found: Bodies = {}
    for uid, item in parsed.items():
        body = item.get(b"BODY[]")
        if not isinstance(body, bytes):
            continue  # no body: expunged meanwhile, or not ours to take
        when = item.get(b"INTERNALDATE")
        if isinstance(when, datetime):
            when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        else:
            when = None
        found[uid] = (body, when)
    return found
