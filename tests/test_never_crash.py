"""Never crash, never hang: the whole corpus through `rootnotify ingest`, and a bounded fuzz run.

Every stored message must end `processed` (none failed or parked): malformed
MIME, real bounces, auto-replies, plain and S/MIME mail. A hypothesis property
test drives random mail (headers, nested parts, bytes) through the
MIME-to-incident path; it is bounded in examples and time.
"""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from sqlmodel import select

from bot.clock import FixedClock
from bot.config import load_config
from bot.context import make_context
from bot.parse.mail.message import parse_message
from storage.db import open_database
from storage.models import STATE_PROCESSED, InboundMessage
from tests.corpus import every_file
from tests.harness import ROOTNOTIFY, write_config
from tests.mail_strategies import mail, run_through

CORPUS_FOLDERS = ("malformed", "dsn", "autoreply", "lookalike", "plain", "smime")
# The property test's budget: examples and the time each may take. Every
# example runs (no wall-clock cut-off that would pass the rest untested); the
# count keeps the test near 20 s on the shared 2-core machines.
FUZZ_EXAMPLES = 120
FUZZ_DEADLINE_MS = 3_000


def test_every_corpus_mail_ends_processed_through_ingest(tmp_path):
    files = [p for folder in CORPUS_FOLDERS for p in every_file(folder)]
    assert len(files) >= len(every_file("malformed")) >= 9  # our own corpus at least
    config = write_config(tmp_path, smtp_port=1, relay_port=1, outgoing_mode="maildir")
    out = subprocess.run([*ROOTNOTIFY, "--config", str(config), "ingest",
                          *map(str, files)], capture_output=True, text=True, timeout=300)
    assert "0 failed, 0 parked" in out.stdout, out.stdout + out.stderr
    db = open_database(load_config(config).storage_url)
    with db.read() as session:
        rows = list(session.exec(select(InboundMessage)))
    db.dispose()
    # Byte-identical files (the shared corpus has a few) are one message; nothing else merges.
    assert len(rows) == len({hashlib.sha256(p.read_bytes()).digest() for p in files})
    not_done = [(r.id, r.state, r.last_error) for r in rows if r.state != STATE_PROCESSED]
    assert not not_done


@pytest.fixture(scope="module")
def fuzz_ctx(tmp_path_factory):  # type: ignore[no-untyped-def]
    path = write_config(tmp_path_factory.mktemp("fuzz"), smtp_port=1, relay_port=1,
                        outgoing_mode="maildir")
    config = load_config(path)
    db = open_database(config.storage_url)
    yield make_context(config, db, FixedClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC)))
    db.dispose()


@settings(max_examples=FUZZ_EXAMPLES, deadline=FUZZ_DEADLINE_MS, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(raw=mail())
def test_random_mail_never_crashes_the_mime_to_incident_path(fuzz_ctx, raw):  # type: ignore[no-untyped-def]
    inbound = run_through(fuzz_ctx, raw)
    assert inbound.kind is not None


def test_known_crashers_stay_fixed():
    # compat32 hands raw 8-bit header values over as email.header.Header.
    assert parse_message(b"From: a@b.c\nDate: Mon, 1 Jan 2024 \xff\n\nhi\n").date is None
    # 3,000 nested multiparts exhaust the stdlib parser's recursion: headers are kept.
    deep = b"From: a@b.c\nContent-Type: multipart/mixed; boundary=b0\n\n" + b"".join(
        b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i - 1, i)
        for i in range(1, 3000))
    message = parse_message(deep)
    assert message.from_address == "a@b.c" and message.limits_exceeded
    # An encoded CRLF in a display name does not become a second address.
    message = parse_message(b"From: =?utf-8?q?Eve=0D=0ABcc:_x@evil.test?= <a@b.c>\n\nhi")
    assert message.from_address == "a@b.c"
