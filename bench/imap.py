"""Measure IMAP intake (messages per second) against a bare imapclient fetch of the same folder.

A throwaway Dovecot on loopback (as in the tests) holds N messages. The bare
rate is what no poller can beat: select, search, then `BODY.PEEK[]` fetches
in the same batch size, nothing else. The poller's rate includes everything
intake does: the size check, the fetch (with INTERNALDATE), the store with
`last_uid` committed in the same transaction (SQLite, synchronous=FULL), the
MOVE to the processed folder, and its state rows. The bare
loop runs before and after the poller (over the same messages, then in the
processed folder) and the faster of the two is the reference. Goal: the
poller at least 0.5 of that, as the median of `--rounds` rounds (each a
fresh INBOX and database). The poller turns imaplib's per-line trace off
when nobody logs it (bot/intake/imap/connection.py); the bare loop, as imapclient
has it, keeps it on, so the ratio against a bare loop without it is printed
too.

    python bench/imap.py [--messages 2000] [--batch-size 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# Run as a script (`python bench/imap.py`): the project root, not bench/, on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imapclient import IMAPClient
from sqlmodel import Session

from bot.clock import FixedClock
from bot.config import load_config
from bot.intake.imap import onepass as imappass
from bot.intake.imap.poller import ImapPoller, connect
from storage.db import open_database
from storage.rawstore import Arrival, StoreResult, store_batch, store_batch_direct
from tests.dovecot import Dovecot, _self_signed
from tests.harness import CA_CONTACT, COMPLETE_FORM, free_port, make_mail, write_config

GOAL_RATIO = 0.5
PASSWORD_ENV = "ROOTNOTIFY_BENCH_IMAP_PASSWORD"


def _messages(count: int, round_no: int) -> list[bytes]:
    # A notification form plus some text: ~2.5 KB, the size of a typical CA mail.
    filler = "Further details of the incident follow in this paragraph. " * 12
    return [make_mail(CA_CONTACT, f"Security incident notification {n}",
                      COMPLETE_FORM + "\n" + filler + "\n",
                      message_id=f"<bench-{round_no}-{n}@exampleca.test>")
            for n in range(count)]


def _bare_rate(server: Dovecot, folder: str, batch_size: int, trace: bool = True
               ) -> tuple[float, int]:
    """The bare loop; `trace=False` also turns off imaplib's trace, as the poller does."""
    ctx = ssl.create_default_context(cafile=str(server.cert))
    started = time.perf_counter()
    with IMAPClient(server.host, port=server.imaps_port, ssl=True, ssl_context=ctx) as c:
        if not trace:
            c._imap.debug = 0
        c.login(server.user, server.password)
        c.select_folder(folder, readonly=True)
        uids = sorted(c.search("ALL"))
        got = 0
        for start in range(0, len(uids), batch_size):
            data = c.fetch(uids[start:start + batch_size], [b"BODY.PEEK[]"])
            got += sum(1 for item in data.values() if b"BODY[]" in item)
    elapsed = time.perf_counter() - started
    return got / elapsed, got


def _batch_store_rate(work: Path, raws: list[bytes], batch_size: int) -> float:
    """What the store would cost with one transaction per batch (a rawstore design option)."""
    db = open_database(f"sqlite:///{work / 'batch.db'}")
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    started = time.perf_counter()
    for i in range(0, len(raws), batch_size):
        with db.write() as session:
            store_batch(session, [Arrival(r, "imap", now) for r in raws[i:i + batch_size]])
    elapsed = time.perf_counter() - started
    db.dispose()
    return len(raws) / elapsed


@dataclass
class Round:
    bare: float  # the faster of the bare loop before (INBOX) and after (Processed)
    bare_quiet: float  # the bare loop without imaplib's trace
    ours: float
    seconds: float
    store_seconds: float


def _round(server: Dovecot, work: Path, round_no: int, count: int, batch_size: int) -> Round:
    """Fill INBOX, time the bare loops and one poller pass (a fresh database)."""
    raws = _messages(count, round_no)
    with server.client() as c:
        if c.folder_exists("Processed"):
            c.delete_folder("Processed")  # the bare loop after the pass reads this round only
        for raw in raws:
            c.append("INBOX", raw)
    bare_before, n1 = _bare_rate(server, "INBOX", batch_size)
    bare_quiet, _ = _bare_rate(server, "INBOX", batch_size, trace=False)

    bot_dir = work / f"bot-{round_no}"
    bot_dir.mkdir()
    config = load_config(write_config(bot_dir, smtp_port=free_port(), relay_port=free_port(),
                                      imap=f"""enabled = true
host = "{server.host}"
port = {server.imaps_port}
username = "{server.user}"
password_env = "{PASSWORD_ENV}"
batch_size = {batch_size}
ca_file = "{server.cert}"
"""))
    db = open_database(config.storage_url)
    poller = ImapPoller(config, db, FixedClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC)))
    stored_seconds = [0.0]

    def timed_store(session: Session, arrivals: list[Arrival]) -> list[StoreResult]:
        began = time.perf_counter()
        try:
            return store_batch_direct(session, arrivals)
        finally:
            stored_seconds[0] += time.perf_counter() - began

    imappass.store_batch_direct = timed_store  # type: ignore[assignment]
    client = connect(config.imap)
    try:
        poller._ensure_folder(client, config.imap.processed_folder)
        started = time.perf_counter()
        taken = poller.poll_once(client)
        elapsed = time.perf_counter() - started
    finally:
        client.logout()
    db.dispose()

    bare_after, n2 = _bare_rate(server, "Processed", batch_size)
    assert n1 == n2 == taken == poller.stored == count, (n1, n2, taken, poller.stored)
    assert server.count("INBOX") == 0
    return Round(bare=max(bare_before, bare_after), bare_quiet=bare_quiet,
                 ours=taken / elapsed, seconds=elapsed, store_seconds=stored_seconds[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rootnotify-bench-imap-"))
    work.chmod(0o711)  # Dovecot's mail user must reach its maildir when we are root
    server_root = work / "dovecot"
    server_root.mkdir()
    cert, _key = _self_signed(server_root)
    server = Dovecot(root=server_root, imaps_port=free_port(), imap_port=free_port(), cert=cert)
    server.start()
    os.environ[PASSWORD_ENV] = server.password
    print(f"cores: {os.cpu_count()}; {args.messages} messages of ~"
          f"{sum(map(len, _messages(10, 0))) // 10} bytes in INBOX each round; "
          f"batch size {args.batch_size}")
    try:
        rounds = []
        for round_no in range(1, args.rounds + 1):
            r = _round(server, work, round_no, args.messages, args.batch_size)
            rounds.append(r)
            print(f"round {round_no}: bare imapclient {r.bare:,.0f} msg/s "
                  f"(without imaplib's trace {r.bare_quiet:,.0f}); rootnotify {r.ours:,.0f} "
                  f"msg/s ({args.messages} stored and moved in {r.seconds:.2f} s; store "
                  f"{r.store_seconds:.2f} s of it, overlapped); ratio {r.ours / r.bare:.2f} "
                  f"(against the quiet loop {r.ours / r.bare_quiet:.2f})")
        ratio = statistics.median(r.ours / r.bare for r in rounds)
        verdict = "met" if ratio >= GOAL_RATIO else "MISSED"
        print(f"median ratio {ratio:.2f} (goal >= {GOAL_RATIO}): {verdict}")
        print(f"for comparison, rawstore.store_batch, one transaction per {args.batch_size}: "
              f"{_batch_store_rate(work, _messages(args.messages, 0), args.batch_size):,.0f} "
              f"msg/s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
