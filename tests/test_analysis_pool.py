"""Analysis in child processes (bot.service.analysispool) decides exactly what the worker would.

The same mail, processed once with `serve`'s analysis processes and once
without, must leave the same record: kind, sender role, incident, S/MIME
verdict, note, state. A child process that dies costs a batch's speed,
never a message.
"""

from __future__ import annotations

import email
import email.policy
import io
import os
import resource
import signal
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from bot.clock import FixedClock
from bot.config import load_config
from bot.context import Context, make_context
from bot.errors import AnalysisAborted
from bot.parse.mail.largeparts import LIFT_MIN_BYTES
from bot.service import analysispool
from bot.service.analysispool import AnalysisPool, Stored
from bot.service.pipeline import MAX_ABORTED_ATTEMPTS, TRANSACTION_BATCH, process_pending
from storage.db import open_database
from storage.models import (
    STATE_FAILED,
    STATE_PARKED,
    STATE_PROCESSED,
    FormValue,
    InboundMessage,
)
from storage.rawstore import Arrival, store_batch
from tests import poison
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
from bot.service import analysispool
from bot.service.analysispool import AnalysisPool, Stored
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


def _pool_context(folder: Path, timeout: int = 60) -> Context:
    folder.mkdir()
    text = write_config(folder, smtp_port=1, relay_port=1, outgoing_mode="maildir").read_text()
    path = folder / "pool.toml"
    path.write_text(text.replace("[bot]\n", f"[bot]\nanalysis_timeout_seconds = {timeout}\n"))
    config = load_config(path)
    return make_context(config, open_database(config.storage_url), FixedClock(NOW))


def _forms_with(poison: str, pidfile: Path, count: int = 5) -> list[bytes]:
    """`count` forms from the CA; the middle one asks the analyser to `poison` (tests.poison)."""
    return [make_mail(CA_CONTACT, f"Security incident {n}",
                      COMPLETE_FORM.replace("Example Issuing CA 2", f"Issuing CA {n}"),
                      message_id=f"<poison-{n}@exampleca.test>",
                      headers={"X-Poison": f"{poison} {pidfile}"} if n == count // 2 else None)
            for n in range(count)]


def _states(ctx: Context) -> dict[str, tuple[str, str | None, int | None]]:
    with ctx.db.read() as session:
        return {r.message_id: (r.state, r.last_error, r.incident_id)
                for r in session.exec(select(InboundMessage))}


def test_a_message_that_kills_its_parser_fails_alone_and_the_worker_goes_on(tmp_path):
    ctx = _pool_context(tmp_path / "bot")
    pidfile = tmp_path / "killed.pid"
    pool = AnalysisPool(ctx.config, processes=1, analyse=poison.analyse_or_misbehave)
    try:
        _store(ctx, _forms_with("kill", pidfile))
        report = process_pending(ctx, pool=pool)
    finally:
        pool.close()
    assert (report.processed, report.failed) == (4, 1)
    states = _states(ctx)
    state, error, incident = states.pop("<poison-2@exampleca.test>")
    assert state == STATE_FAILED and incident is None
    assert error == "AnalysisAborted: the process parsing it died (killed by SIGKILL)"
    # Found by the message its child was on: not parsed a second time to be sure.
    assert len(pidfile.read_text().split()) == 1
    # The others of its batch were analysed (in children, never by the worker
    # itself) and opened their incidents.
    assert all(s == STATE_PROCESSED and i is not None for s, _e, i in states.values())
    assert pool.aborted == 1 and pool.analysed == 4
    ctx.db.dispose()


def test_a_parse_that_never_ends_is_killed_at_the_timeout_and_fails_alone(tmp_path):
    ctx = _pool_context(tmp_path / "bot", timeout=2)
    pidfile = tmp_path / "hung.pid"
    pool = AnalysisPool(ctx.config, processes=1, analyse=poison.analyse_or_misbehave)
    try:
        _store(ctx, _forms_with("hang", pidfile))
        report = process_pending(ctx, pool=pool)
        # Hung once (the rest of its batch was parsed again without it); the
        # child was killed, not left spinning beside us.
        hung = [int(pid) for pid in pidfile.read_text().split()]
        assert len(hung) == 1 and not _alive(hung[0])
    finally:
        pool.close()
    assert (report.processed, report.failed) == (4, 1)
    state, error, _incident = _states(ctx)["<poison-2@exampleca.test>"]
    assert state == STATE_FAILED
    assert error == "AnalysisAborted: parsing it did not end within 2 s; its process was killed"
    ctx.db.dispose()


def test_a_message_whose_parser_was_killed_goes_through_on_its_retry(tmp_path):
    """An out-of-memory kill may be the machine's state, not the message's.

    Killed while parsing it, the message fails; its retry, when the machine
    has recovered, goes through."""
    ctx = _pool_context(tmp_path / "bot")
    pidfile = tmp_path / "once.pid"
    pool = AnalysisPool(ctx.config, processes=1, analyse=poison.analyse_or_misbehave)
    try:
        _store(ctx, _forms_with("kill-once", pidfile))
        assert process_pending(ctx, pool=pool).failed == 1
        with ctx.db.read() as session:
            retry_at = session.exec(select(InboundMessage.next_attempt_at).where(
                InboundMessage.message_id == "<poison-2@exampleca.test>")).one()
        assert retry_at is not None
        assert process_pending(ctx, pool=pool).processed == 0  # not before its time
        ctx.clock.set(retry_at.replace(tzinfo=UTC))  # type: ignore[attr-defined]
        assert process_pending(ctx, pool=pool).processed == 1
    finally:
        pool.close()
    state, error, incident = _states(ctx)["<poison-2@exampleca.test>"]
    assert (state, error) == (STATE_PROCESSED, None) and incident is not None
    assert len(pidfile.read_text().split()) == 1


@pytest.mark.parametrize("processes", [1, 2])
def test_a_culprit_is_found_when_the_next_batch_was_handed_over_after_its_child_died(
        tmp_path, processes):
    """The worker hands the pool its next batch before it reads this one's answer.
    If this batch's child has died by then, the next batch goes to new children,
    and the dead child's message must still be the one blamed, not found by
    parsing the batch again one message at a time (where a kill-once message
    would pass, and its kill go unrecorded)."""
    ctx = _pool_context(tmp_path / "bot")
    pidfile = tmp_path / "once.pid"
    forms = _forms_with("kill-once", pidfile, count=6)
    pool = AnalysisPool(ctx.config, processes=processes,
                        analyse=poison.analyse_or_misbehave)
    try:
        current = pool.submit([Stored(n, raw, NOW, None) for n, raw in enumerate(forms[:5], 1)])
        eventually("the child to die and the pool to know it", current.done)
        following = pool.submit([Stored(6, forms[5], NOW, None)])
        found = current.results()
        assert set(following.results()) == {6}
    finally:
        pool.close()
    aborted = {n: str(result) for n, result in found.items()
               if isinstance(result, AnalysisAborted)}
    assert aborted == {4: "the process parsing it died (killed by SIGKILL)"}
    assert set(found) == {1, 2, 3, 4, 5}
    assert len(pidfile.read_text().split()) == 1
    ctx.db.dispose()


def test_the_analysis_timeout_is_a_checked_setting(tmp_path):
    assert _pool_context(tmp_path / "ok", timeout=5).config.bot.analysis_timeout_seconds == 5
    with pytest.raises(Exception, match=r"analysis_timeout_seconds.*between 1 and 3600"):
        _pool_context(tmp_path / "bad", timeout=0)


def test_stopping_while_a_parse_hangs_kills_its_process_after_a_grace(tmp_path, monkeypatch):
    monkeypatch.setattr(analysispool, "CLOSE_GRACE_SECONDS", 0.5)
    ctx = _pool_context(tmp_path / "bot")
    pidfile = tmp_path / "hung.pid"
    pool = AnalysisPool(ctx.config, processes=1, analyse=poison.analyse_or_misbehave)
    pool.submit([Stored(1, _forms_with("hang", pidfile, count=1)[0], NOW, None)])
    eventually("the parse to hang", pidfile.exists)
    pool.close()  # as `serve` does at stop; without the kill it would wait for ever
    assert not _alive(int(pidfile.read_text()))
    ctx.db.dispose()


def test_analysis_processes_that_cannot_start_cost_speed_never_a_message(tmp_path):
    ctx = _pool_context(tmp_path / "bot")
    pool = AnalysisPool(ctx.config, processes=1)
    assert ctx.config.path is not None
    ctx.config.path.unlink()  # each child loads the configuration, and now cannot
    try:
        _store(ctx, _forms_with("none", tmp_path / "unused.pid"))
        report = process_pending(ctx, pool=pool)
    finally:
        pool.close()
    assert (report.processed, report.failed) == (5, 0)
    assert (pool.analysed, pool.aborted) == (0, 0)  # the worker parsed them all itself
    ctx.db.dispose()


def test_a_message_that_kills_its_parser_every_time_is_parked_after_three_tries(tmp_path):
    ctx = _pool_context(tmp_path / "bot")
    pool = AnalysisPool(ctx.config, processes=1, analyse=poison.analyse_or_misbehave)
    mail = _forms_with("kill", tmp_path / "killed.pid", count=1)
    try:
        _store(ctx, mail)
        for _attempt in range(MAX_ABORTED_ATTEMPTS):
            with ctx.db.read() as session:
                row = session.exec(select(InboundMessage)).one()
            ctx.clock.set((row.next_attempt_at or NOW).replace(tzinfo=UTC))  # type: ignore[attr-defined]
            process_pending(ctx, pool=pool)
    finally:
        pool.close()
    with ctx.db.read() as session:
        row = session.exec(select(InboundMessage)).one()
    assert (row.state, row.attempts, row.next_attempt_at) == (
        STATE_PARKED, MAX_ABORTED_ATTEMPTS, None)
    assert (row.last_error or "").startswith("AnalysisAborted: the process parsing it died")
    ctx.db.dispose()


def test_with_two_processes_only_the_killer_is_blamed_not_its_neighbours(tmp_path):
    """The pool terminates a dead child's sibling, which was parsing another batch:
    that batch is parsed again, and none of its messages is failed for it."""
    ctx = _pool_context(tmp_path / "bot")
    count = 2 * TRANSACTION_BATCH
    pool = AnalysisPool(ctx.config, processes=2, analyse=poison.analyse_or_misbehave)
    try:
        _store(ctx, _forms_with("kill", tmp_path / "killed.pid", count=count))
        report = process_pending(ctx, pool=pool)
    finally:
        pool.close()
    assert (report.processed, report.failed, pool.aborted) == (count - 1, 1, 1)
    failed = [m for m, (state, _e, _i) in _states(ctx).items() if state == STATE_FAILED]
    assert failed == [f"<poison-{count // 2}@exampleca.test>"]
    ctx.db.dispose()


def _docx_bomb(xml_bytes: int = 45 * 1024 * 1024) -> bytes:
    """A .docx of ~170 KB whose word/document.xml unpacks to `xml_bytes` of tiny paragraphs
    (under the 50 MB unpacked cap): parsed whole, it grew a process past 650 MB."""
    import docx

    base = io.BytesIO()
    docx.Document().save(base)
    head = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w='
            b'"http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>')
    tail = b"</w:body></w:document>"
    para = b"<w:p><w:r><w:t>x</w:t></w:r></w:p>"
    xml = head + para * ((xml_bytes - len(head) - len(tail)) // len(para)) + tail
    out = io.BytesIO()
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename,
                         xml if info.filename == "word/document.xml" else src.read(info))
    return out.getvalue()


def _rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def test_a_docx_bomb_is_bounded_in_its_process_which_is_then_replaced(tmp_path):
    ctx = _pool_context(tmp_path / "bot")
    limit = ctx.config.bot.analysis_memory_limit * analysispool.MIB
    recycle = ctx.config.bot.analysis_recycle_rss * analysispool.MIB
    assert (limit, recycle) == (512 * analysispool.MIB, 256 * analysispool.MIB)
    bomb = _docx_bomb()
    assert len(bomb) < 250_000
    mail = email.message_from_bytes(make_mail(CA_CONTACT, "Security incident notification",
                                              "The form is attached.",
                                              message_id="<bomb@exampleca.test>"),
                                    policy=email.policy.SMTP)
    mail.add_attachment(bomb, maintype="application", subtype=(
        "vnd.openxmlformats-officedocument.wordprocessingml.document"), filename="form.docx")
    pool = AnalysisPool(ctx.config, processes=1)
    try:
        assert pool.start()
        [parser] = pool.child_pids()
        _store(ctx, [mail.as_bytes()])
        assert process_pending(ctx, pool=pool).processed == 1
        # The parse grew its process up to the bound, and no further.
        assert 300 * analysispool.MIB < pool.peak_rss <= limit
        # That process is replaced, not kept at its size.
        assert pool.recycled == 1
        eventually("the large analysis process to end", lambda: not _alive(parser))
        _store(ctx, [make_mail(CA_CONTACT, "Security incident", COMPLETE_FORM,
                               message_id="<after-bomb@exampleca.test>")])
        assert process_pending(ctx, pool=pool).processed == 1
        [fresh] = pool.child_pids()
        assert fresh != parser and _rss_of(fresh) < recycle
        assert pool.recycled == 1
    finally:
        pool.close()
    with ctx.db.read() as session:
        row = session.exec(select(InboundMessage).where(
            InboundMessage.message_id == "<bomb@exampleca.test>")).one()
    assert (row.state, row.last_error) == (STATE_PROCESSED, None)  # answered, not lost
    ctx.db.dispose()


def test_a_message_past_the_memory_bound_fails_alone_and_is_not_parsed_in_the_worker(tmp_path):
    ctx = _pool_context(tmp_path / "bot")
    pidfile = tmp_path / "oom.pid"
    pool = AnalysisPool(ctx.config, processes=1, analyse=poison.analyse_or_misbehave)
    try:
        _store(ctx, _forms_with("oom", pidfile))
        report = process_pending(ctx, pool=pool)
    finally:
        pool.close()
    assert (report.processed, report.failed) == (4, 1)
    state, error, incident = _states(ctx)["<poison-2@exampleca.test>"]
    assert (state, incident) == (STATE_FAILED, None)
    assert error == ("AnalysisAborted: parsing it needed more than the 512 MiB an analysis "
                     "process may use ([bot] analysis_memory_limit)")
    assert pool.aborted == 1 and pool.analysed == 4
    ctx.db.dispose()


def test_children_of_a_large_worker_are_not_replaced_for_the_size_they_were_born_with(tmp_path):
    # Linux carries ru_maxrss through fork and exec: a worker grown past the
    # recycling size (a large list parsed in-process, say) spawns children that
    # report its peak as theirs. They must be judged by what they grew to.
    ctx = _pool_context(tmp_path / "bot")
    recycle = ctx.config.bot.analysis_recycle_rss * analysispool.MIB
    ballast = bytearray(recycle + 64 * analysispool.MIB)  # zero-filled: every page touched
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 > recycle
    pool = AnalysisPool(ctx.config, processes=1)
    try:
        assert pool.start()
        [child] = pool.child_pids()
        for n in range(3):
            _store(ctx, [make_mail(CA_CONTACT, f"Security incident {n}",
                                   COMPLETE_FORM.replace("Example Issuing CA 2", f"CA {n}"),
                                   message_id=f"<small-{n}@exampleca.test>")])
            assert process_pending(ctx, pool=pool).processed == 1
        assert pool.recycled == 0
        assert pool.child_pids() == [child]
        assert pool.peak_rss < recycle
    finally:
        pool.close()
        del ballast


def test_a_large_list_comes_back_from_the_child_as_spans_of_the_workers_own_bytes(tmp_path):
    """A list lifted out of the mail is not pickled back decoded (an 86 MB list was three
    copies of itself): the worker reads it from its own raw bytes, and reads it whole."""
    from tests.test_certificate_lists_e2e import list_mail

    # Under the tests' 1 MiB limit the mail would be cut, and a cut copy parsed.
    config = load_config(write_config(tmp_path, smtp_port=1, relay_port=1,
                                      outgoing_mode="maildir", max_message_size=8 << 20))
    rows = "".join(f"{n:036x},CN=Example Issuing CA 2\r\n" for n in range(20_000)).encode()
    raw = list_mail("INC-2026-0001", "misissued.csv", "text/csv", b"serial,issuer\r\n" + rows)
    assert len(raw) > 4 * LIFT_MIN_BYTES  # lifted out before parsing, by far
    item = Stored(1, raw, NOW, None)
    pool = AnalysisPool(config, processes=1)
    try:
        found = pool.submit([item]).results()
    finally:
        pool.close()
    (listed,) = found[1].certificate_lists
    assert listed.filename == "misissued.csv"
    assert listed.lifted_parts is not None and listed.lifted_parts.source is item.raw
    assert listed.data == b"serial,issuer\r\n" + rows
