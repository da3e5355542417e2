"""Analysis in child processes (bot.analysispool) decides exactly what analysis in the worker does.

The same mail, processed once with `serve`'s analysis processes and once
without, must leave the same record: kind, sender role, incident, S/MIME
verdict, note, state. A child process that dies costs a batch's speed,
never a message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from bot.analysispool import AnalysisPool
from bot.clock import FixedClock
from bot.config import load_config
from bot.context import Context, make_context
from bot.pipeline import TRANSACTION_BATCH, process_pending
from storage.db import open_database
from storage.models import STATE_PROCESSED, FormValue, InboundMessage
from storage.rawstore import Arrival, store_batch
from tests.corpus import corpus_files
from tests.harness import CA_CONTACT, COMPLETE_FORM, eventually, make_mail, write_config

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CORPUS_FOLDERS = ("malformed", "dsn", "autoreply", "plain", "smime")


def _mails() -> list[bytes]:
    forms = [make_mail(CA_CONTACT, f"Security incident {n}",
                       COMPLETE_FORM.replace("Example Issuing CA 2", f"Issuing CA {n}"),
                       message_id=f"<pool-{n}@exampleca.test>")
             for n in range(2 * TRANSACTION_BATCH + 3)]
    corpus = [p.read_bytes() for folder in CORPUS_FOLDERS for p in corpus_files(folder)]
    return forms + corpus


def _context(folder: Path) -> Context:
    folder.mkdir()
    config = load_config(write_config(folder, smtp_port=1, relay_port=1,
                                      outgoing_mode="maildir"))
    return make_context(config, open_database(config.storage_url), FixedClock(NOW))


def _store(ctx: Context, raws: list[bytes]) -> None:
    with ctx.db.write() as session:
        store_batch(session, [Arrival(raw, "smtp", NOW) for raw in raws])


def _record(ctx: Context) -> list[tuple[object, ...]]:
    with ctx.db.read() as session:
        rows = session.exec(select(InboundMessage).order_by(InboundMessage.id)).all()
        answers = session.exec(select(FormValue.incident_id, FormValue.key, FormValue.value)
                               .order_by(FormValue.id)).all()
        return [(r.message_id, r.state, r.kind, r.sender_role, r.ca, r.incident_id, r.smime,
                 r.smime_reason, r.note, r.quarantined, r.last_error) for r in rows] + answers


def test_the_pool_decides_exactly_what_the_worker_decides(tmp_path):
    raws = _mails()
    alone = _context(tmp_path / "alone")
    pooled = _context(tmp_path / "pooled")
    pool = AnalysisPool(pooled.config, processes=1)
    try:
        for ctx in (alone, pooled):
            _store(ctx, raws)
        process_pending(alone)
        report = process_pending(pooled, pool=pool)
        assert pool.analysed > 0  # the children did the parsing, not a fallback
    finally:
        pool.close()
    with pooled.db.read() as session:
        rows = session.exec(select(InboundMessage)).all()
    assert report.processed == len(rows) and all(r.state == STATE_PROCESSED for r in rows)
    assert _record(pooled) == _record(alone)
    for ctx in (alone, pooled):
        ctx.db.dispose()


def test_a_child_that_dies_costs_speed_never_a_message(tmp_path):
    ctx = _context(tmp_path / "bot")
    pool = AnalysisPool(ctx.config, processes=1)
    try:
        pool.start()
        first = pool.child_pids()
        assert first
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        _store(ctx, [make_mail(CA_CONTACT, f"Security incident {n}", COMPLETE_FORM,
                               message_id=f"<dies-{n}@exampleca.test>")
                     for n in range(3 * TRANSACTION_BATCH)])
        report = process_pending(ctx, pool=pool)
        assert (report.processed, report.failed, report.parked) == (3 * TRANSACTION_BATCH, 0, 0)
        # The pool was started again and parsed the later batches.
        assert pool.child_pids() and not set(pool.child_pids()) & set(first)
        assert pool.analysed > 0
    finally:
        pool.close()
        ctx.db.dispose()


def test_zero_analysis_processes_parse_in_the_worker(tmp_path):
    path = write_config(tmp_path, smtp_port=1, relay_port=1,
                        extra="").read_text().replace("[bot]\n", "[bot]\nanalysis_processes = 0\n")
    (tmp_path / "zero.toml").write_text(path)
    assert load_config(tmp_path / "zero.toml").bot.analysis_processes == 0
    (tmp_path / "bad.toml").write_text(path.replace("analysis_processes = 0",
                                                    "analysis_processes = -1"))
    with pytest.raises(Exception, match="analysis_processes"):
        load_config(tmp_path / "bad.toml")


# A stand-in for serve's worker: starts its analysis pool, says the child's pid, waits.
POOL_OWNER = """
import sys, time
from pathlib import Path
from bot.analysispool import AnalysisPool
from bot.config import load_config
pool = AnalysisPool(load_config(Path(sys.argv[1])), processes=1)
pool.start()
print(*pool.child_pids(), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def test_a_worker_killed_outright_leaves_no_analysis_process_behind(tmp_path):
    config = write_config(tmp_path, smtp_port=1, relay_port=1, outgoing_mode="maildir")
    owner = subprocess.Popen([sys.executable, "-c", POOL_OWNER, str(config)],
                             cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE)
    assert owner.stdout is not None
    children = [int(pid) for pid in owner.stdout.readline().split()]
    assert children and all(_alive(pid) for pid in children)
    owner.kill()  # SIGKILL: no shutdown of the pool runs
    owner.wait()
    eventually("the analysis process to end with its worker",
               lambda: not any(_alive(pid) for pid in children))
