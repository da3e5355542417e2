"""`rootnotify ingest`: take .eml files, mbox files and maildirs in, as SMTP would.

The time of receipt of a file is the newest `Received:` timestamp in it, else
its `Date:`, else now (the contract's rule), so a late notification cannot be
made punctual by re-ingesting it.
"""

from __future__ import annotations

import logging
import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bot.clock import Clock
from bot.parse.message import parse_date
from storage.db import Database
from storage.rawstore import Arrival, store

log = logging.getLogger("rootnotify.intake.files")

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_RECEIVED = re.compile(rb"^received:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_DATE = re.compile(rb"^date:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


@dataclass
class IngestReport:
    stored: int = 0
    duplicates: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (where, why)

    @property
    def total(self) -> int:
        return self.stored + self.duplicates + len(self.refused)


def _parse_time(value: bytes) -> datetime | None:
    return parse_date(value.decode("ascii", "replace").strip())


def receipt_time(raw: bytes) -> datetime | None:
    """The newest Received: timestamp (after its last ';'), else Date:, else None."""
    split = _HEADER_END.search(raw)
    head = raw[: split.start()] if split else raw
    times = []
    for match in _RECEIVED.finditer(head):
        _, sep, stamp = match.group(1).rpartition(b";")
        if sep:
            parsed = _parse_time(stamp)
            if parsed:
                times.append(parsed)
    if times:
        return max(times)
    date = _DATE.search(head)
    return _parse_time(date.group(1)) if date else None


def iter_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """(where, raw bytes) for every message under `path`."""
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            box = mailbox.Maildir(path, factory=None, create=False)
            for key in box.iterkeys():
                with box.get_file(key) as fh:
                    yield f"{path}:{key}", fh.read()
            return
        for child in sorted(path.iterdir()):
            if child.is_file() or child.is_dir():
                yield from iter_messages(child)
        return
    with path.open("rb") as fh:
        start = fh.read(5)
    if start == b"From ":
        box = mailbox.mbox(path, factory=None, create=False)
        for i, key in enumerate(box.iterkeys(), 1):
            # get_bytes drops the mbox "From " separator line, as an MTA never sent it.
            yield f"{path}#{i}", box.get_bytes(key)
        return
    yield str(path), path.read_bytes()


def count_messages(paths: list[Path]) -> int:
    return sum(1 for p in paths for _ in iter_messages(p))


def ingest(
    db: Database,
    clock: Clock,
    paths: list[Path],
    max_message_size: int,
    progress: object | None = None,
) -> IngestReport:
    report = IngestReport()
    for path in paths:
        if not path.exists():
            report.refused.append((str(path), "no such file or folder"))
            continue
        for where, raw in iter_messages(path):
            if len(raw) > max_message_size:
                report.refused.append(
                    (where, f"{len(raw)} bytes exceeds max_message_size {max_message_size}"))
                log.warning("%s refused: %d bytes over the limit", where, len(raw))
            else:
                result = store(db, Arrival(
                    raw=raw, channel="file",
                    received_at=receipt_time(raw) or clock.now(),
                    envelope_from=None, envelope_to=()))
                if result.duplicate:
                    report.duplicates += 1
                else:
                    report.stored += 1
                    log.info("%s stored as message %d", where, result.id)
            if progress is not None:
                progress()  # type: ignore[operator]
    return report
