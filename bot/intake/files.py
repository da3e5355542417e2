"""`rootnotify ingest`: take .eml files, mbox files and maildirs in, as SMTP would.

The time of receipt of a file is the newest `Received:` timestamp in it, else
its `Date:`, else now (the contract's rule), so a late notification cannot be
made punctual by re-ingesting it.

Only mail is taken: a stored message is kept forever, so a folder that is no
maildir (it is not walked), an empty file or one without a single mail
header (`/etc/passwd`, a README, random bytes) is refused with its reason
and nothing of it is stored.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import logging
import mailbox
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bot.clock import Clock
from bot.parse.mail.message import parse_date
from storage.db import Database
from storage.rawstore import Arrival, store

log = logging.getLogger("rootnotify.intake.files")

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_RECEIVED = re.compile(rb"^received:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_DATE = re.compile(rb"^date:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
# Header fields that make a file a mail (RFC 5322, 2045): one of them must be
# there. A looser test let `/etc/passwd` through ("root:x:0:0:…" reads as a
# header field); every mail of the corpus, fragments included, has one.
MAIL_HEADERS = frozenset({
    "from", "to", "cc", "subject", "date", "message-id", "received", "return-path",
    "sender", "reply-to", "in-reply-to", "references", "delivered-to", "mime-version",
    "content-type", "content-transfer-encoding",
})
_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)


class NotMail(Exception):
    """A path or a message that is not mail; the text says why."""


def why_not_mail(raw: bytes) -> str | None:
    """None for something that is a mail; else the reason it is not."""
    if not raw or raw.isspace():  # not raw.strip(): that copied a 116 MB list mail
        return "empty, not a mail"
    # The header block only: the parser reads a whole body into lines even
    # when it keeps only the headers (~250 MiB for a 23 MB list mail).
    end = _HEADER_END.search(raw)
    head = raw[: end.end()] if end else raw
    if not {name.lower() for name in _HEADERS.parsebytes(head)} & MAIL_HEADERS:
        return "no mail header (From:, Date:, Subject: …), not a mail"
    return None


@dataclass
class IngestReport:
    stored: int = 0
    duplicates: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    ids: list[int] = field(default_factory=list)  # the messages of the files given

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


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def iter_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """(where, raw bytes) for every message of `path`: an .eml file, an mbox or a maildir.

    Raises NotMail for a folder that is no maildir, and for a file that is
    neither an mbox nor a mail; a maildir's or an mbox's messages are checked
    one by one by the caller (`why_not_mail`).
    """
    if path.is_dir():
        if not is_maildir(path):
            raise NotMail("a folder that is not a maildir (no cur/ or new/ inside); give "
                          ".eml files, mbox files or maildirs")
        box = mailbox.Maildir(path, factory=None, create=False)
        for key in sorted(box.iterkeys()):
            with box.get_file(key) as fh:
                yield f"{path}:{key}", fh.read()
        return
    if not path.is_file():
        raise NotMail("neither a file nor a folder")
    with path.open("rb") as fh:
        start = fh.read(5)
    if start == b"From ":
        box = mailbox.mbox(path, factory=None, create=False)
        for i, key in enumerate(box.iterkeys(), 1):
            # get_bytes drops the mbox "From " separator line, as an MTA never sent it.
            yield f"{path}#{i}", box.get_bytes(key)
        return
    raw = path.read_bytes()
    why = why_not_mail(raw)
    if why is not None:
        raise NotMail(why)
    yield str(path), raw


def count_messages(paths: list[Path]) -> int:
    """How many messages `paths` hold (paths that are not mail count none)."""
    total = 0
    for path in paths:
        with contextlib.suppress(NotMail, OSError):
            total += sum(1 for _ in iter_messages(path))
    return total


def ingest(
    db: Database,
    clock: Clock,
    paths: list[Path],
    max_message_size: int,
    progress: Callable[[], None] | None = None,
) -> IngestReport:
    report = IngestReport()
    for path in paths:
        if not path.exists():
            report.refused.append((str(path), "no such file or folder"))
            continue
        try:
            for where, raw in iter_messages(path):
                _take(db, clock, where, raw, max_message_size, report)
                if progress is not None:
                    progress()
        except NotMail as why:
            report.refused.append((str(path), str(why)))
            log.info("%s refused: %s", path, why)
        except OSError as exc:
            report.refused.append((str(path), exc.strerror or str(exc)))
    return report


def _take(db: Database, clock: Clock, where: str, raw: bytes, max_message_size: int,
          report: IngestReport) -> None:
    """Store one message of a file, or refuse it with its reason."""
    why = why_not_mail(raw)
    if why is None and len(raw) > max_message_size:
        why = f"{len(raw)} bytes exceeds max_message_size {max_message_size}"
    if why is not None:
        report.refused.append((where, why))
        log.info("%s refused: %s", where, why)
        return
    result = store(db, Arrival(raw=raw, channel="file",
                               received_at=receipt_time(raw) or clock.now(),
                               envelope_from=None, envelope_to=()))
    report.ids.append(result.id)
    if result.duplicate:
        report.duplicates += 1
    else:
        report.stored += 1
        log.info("%s stored as message %d", where, result.id)
