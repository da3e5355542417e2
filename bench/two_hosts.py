"""Benchmark: the intake rate of two hosts on one PostgreSQL against one host, same run.

    python bench/two_hosts.py [--messages 400] [--sessions 4]

Starts a throwaway PostgreSQL (tests/postgres.py) and, on one database a
round, the intake of one `serve` (its listener and group commit; on
PostgreSQL each message is committed before 250), then of two with their own
ports, the sessions spread over them. Prints accepted messages per second
for each round, the ratio two/one, and checks that every message was stored
once. On one machine both hosts share its cores, so the ratio shows what the
database's commit allows rather than what two machines would.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import smtplib
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlmodel import func, select

from bot.config import load_config
from bot.service.app import Service
from storage.models import InboundMessage
from tests.harness import (
    BOT,
    CA_CONTACT,
    free_port,
    make_mail,
    numbered_form,
    write_config,
)
from tests.postgres import _start


def _send(port: int, first: int, count: int, tag: str) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        for i in range(first, first + count):
            raw = make_mail(CA_CONTACT, "Security incident notification", numbered_form(i),
                            message_id=f"<{tag}-{i}@exampleca.test>")
            client.sendmail(CA_CONTACT, [BOT], raw.replace(b"\r\n", b"\n")
                            .replace(b"\n", b"\r\n"))


async def _round(root: Path, url: str, hosts: int, messages: int, sessions: int) -> float:
    services, ports = [], []
    for h in range(hosts):
        port = free_port()
        folder = root / f"host{h}"
        folder.mkdir()
        config = load_config(write_config(folder, smtp_port=port, relay_port=free_port(),
                                          storage_url=url))
        service = Service(config, role="intake")
        await service.start()
        services.append(service)
        ports.append(port)
    tag = uuid.uuid4().hex[:8]
    share = messages // sessions
    threads = [threading.Thread(target=_send, args=(ports[s % hosts], s * share, share, tag))
               for s in range(sessions)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    await asyncio.to_thread(lambda: [thread.join() for thread in threads])
    elapsed = time.perf_counter() - began
    with services[0].db.read() as session:
        stored = session.exec(select(func.count()).select_from(InboundMessage)).one()
    for service in services:
        await service.stop()
        service.db.dispose()
    if stored != share * sessions:
        raise SystemExit(f"{hosts} host(s): {stored} stored of {share * sessions} sent")
    return share * sessions / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    # At most [smtp] max_connections_per_client (5) to one host from this one address.
    parser.add_argument("--sessions", type=int, default=4)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rootnotify-two-hosts-"))
    server = _start(root)
    try:
        rates = {}
        for hosts in (1, 2):
            name = f"b{hosts}_{uuid.uuid4().hex[:8]}"
            with server.admin() as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            work = root / name
            work.mkdir()
            rates[hosts] = asyncio.run(_round(work, server.url(name), hosts, args.messages,
                                              args.sessions))
            print(f"{hosts} host(s): {rates[hosts]:.0f} msg/s")
        print(f"two hosts / one: {rates[2] / rates[1]:.2f}")
    finally:
        server.process.terminate()
        server.process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
