"""`rootnotify tick --dry-run`: what a tick would send, worked out on a copy of the database.

The pipeline and the scheduler write as they decide (events, deadlines,
outgoing mail), so "what would happen" is found by letting them run on a
copy (SQLite's online backup, consistent while `serve` writes) in a
scratch folder, reading the outgoing mail they queued there, and throwing
the copy away. The live database and its timeline are not touched.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import col, func, select

from bot.clock import Clock
from bot.config import Config
from bot.context import make_context
from bot.errors import OperatorError
from storage.db import open_database, sqlite_file
from storage.models import OutboundMessage


@dataclass(frozen=True)
class WouldSend:
    kind: str
    incident: str | None
    to: str
    subject: str


def preview_tick(config: Config, clock: Clock) -> tuple[int, list[WouldSend]]:
    """(messages the pipeline would process, mails the pipeline and scheduler would queue)."""
    from bot.service.pipeline import process_pending
    from bot.service.scheduler import run_scheduler

    source = sqlite_file(config.storage_url)
    if source is None:
        raise OperatorError("--dry-run works on a SQLite database (it runs the tick on a copy)")
    with tempfile.TemporaryDirectory(prefix="rootnotify-dry-run-") as scratch:
        copy = Path(scratch) / "rootnotify.db"
        if source.is_file():
            with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as live, \
                    sqlite3.connect(copy) as target:
                live.backup(target)
            live.close()
            target.close()
        # Its own data_dir too: the spool and the maildir outbox stay as they are.
        scratch_config = dataclasses.replace(
            config, storage_url=f"sqlite:///{copy}",
            bot=dataclasses.replace(config.bot, data_dir=Path(scratch)))
        db = open_database(scratch_config.storage_url)
        try:
            ctx = make_context(scratch_config, db, clock)
            with db.read() as session:
                before = session.exec(select(func.max(OutboundMessage.id))).one() or 0
            processed = process_pending(ctx).processed
            run_scheduler(ctx)
            with db.read() as session:
                queued = session.exec(select(OutboundMessage)
                                      .where(col(OutboundMessage.id) > before)
                                      .order_by(col(OutboundMessage.id))).all()
                return processed, [WouldSend(o.kind, o.incident_id, o.recipients, o.subject)
                                   for o in queued]
        finally:
            db.dispose()
