"""What every stage after intake needs, built once from the config and passed down."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.clock import Clock
from bot.config import Config
from bot.outbox.render import Renderer
from bot.trust import Trust, load_trust
from storage.db import Database


@dataclass(frozen=True)
class Context:
    config: Config
    db: Database
    clock: Clock
    renderer: Renderer
    trust: Trust
    # The DNS TXT lookup DKIM checks of staff mail use (dkimpy's `dnsfunc`:
    # name bytes → TXT bytes or None); None means the real DNS. Tests inject one.
    dkim_dns: Callable[..., bytes | None] | None = None
    # While a mail is acted on, `clock` says its receipt time (every decision
    # derives from it) and this is the process's own clock, by which the
    # outbox records when a mail was really queued (`status` ages it).
    process_clock: Clock | None = None

    @property
    def program_name(self) -> str:
        from email.utils import parseaddr

        name, _ = parseaddr(self.config.outgoing.from_address)
        return name or "Root Program"


def make_context(config: Config, db: Database, clock: Clock) -> Context:
    return Context(config=config, db=db, clock=clock,
                   renderer=Renderer(config.bot.templates_dir), trust=load_trust(config))
