"""Helpers for the web view's tests: the running bot plus its web view, and signing in by mail.

The web view runs on uvicorn on 127.0.0.1 inside the bot's event loop, with
the bot's FixedClock, so a test moves time for both. The sign-in link is
read from the mail the bot sent to the relay sink, as staff would.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bot.operator.web.server import serve_web
from storage.models import OutboundMessage
from tests.harness import STAFF, WAIT_SECONDS, RunningBot, Sink, free_port, running_bot

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]*)"')
SIGN_IN_SUBJECT = "sign-in link"


@dataclass
class WebBot:
    bot: RunningBot
    sink: Sink
    base_url: str  # where the server listens (http, loopback)

    def link_mails(self, address: str = STAFF) -> list:
        return [r for r in self.sink.received
                if address in r.recipients and SIGN_IN_SUBJECT in r.subject]

    def wait_for_link(self, address: str = STAFF, count: int = 1) -> str:
        """The sign-in link of the `count`-th such mail to `address`, as mailed."""
        mails = self.sink.wait_for(lambda r: address in r.recipients
                                   and SIGN_IN_SUBJECT in r.subject, count=count)
        found = re.search(r"(http\S+/login/\S+)", mails[count - 1].body)
        assert found, mails[count - 1].body
        return found.group(1)

    def sign_in_mails_queued(self) -> int:
        from sqlmodel import func, select

        with self.bot.ctx.db.read() as session:
            return session.exec(select(func.count()).select_from(OutboundMessage)
                                .where(OutboundMessage.kind == "sign-in")).one()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, follow_redirects=False,
                            timeout=WAIT_SECONDS)


def web_config(port: int, base_url: str | None = None) -> str:
    return (f'\n[web]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
            + (f'base_url = "{base_url}"\n' if base_url else ""))


@contextmanager
def web_bot(tmp_path: Path, *, at: datetime = AT, base_url: str | None = None,
            **config_kw: object) -> Iterator[WebBot]:
    port = free_port()
    with running_bot(tmp_path, at=at, extra=web_config(port, base_url),
                     **config_kw) as (bot, sink):  # type: ignore[arg-type]
        stop, started = asyncio.Event(), asyncio.Event()
        serving = asyncio.run_coroutine_threadsafe(
            serve_web(bot.config, stop, clock=bot.clock, started=started), bot.loop)
        asyncio.run_coroutine_threadsafe(started.wait(), bot.loop).result(WAIT_SECONDS)
        try:
            yield WebBot(bot=bot, sink=sink, base_url=f"http://127.0.0.1:{port}")
        finally:
            bot.loop.call_soon_threadsafe(stop.set)
            serving.result(WAIT_SECONDS)


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, html
    return found.group(1)


def ask_for_link(client: httpx.Client, address: str = STAFF) -> httpx.Response:
    form = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(form.text), "address": address})


def use_link(client: httpx.Client, link: str) -> httpx.Response:
    """Open the link and press "Sign in", as a person would."""
    path = "/login/" + link.rsplit("/login/", 1)[1]
    page = client.get(path)
    if not CSRF_FIELD.search(page.text):  # a dead link has no button; press it anyway
        page = client.get("/login")
    return client.post(path, data={"csrf": csrf_of(page.text)})


def signed_in(web: WebBot, count: int = 1) -> httpx.Client:
    """A client signed in as staff through the mailed link."""
    client = web.client()
    assert ask_for_link(client).status_code == 200
    answer = use_link(client, web.wait_for_link(count=count))
    assert (answer.status_code, answer.headers["location"]) == (303, "/incidents")
    return client
