"""Fuzz the MIME-to-incident path for longer than the test suite does, and report crashes.

    python bench/fuzz_pipeline.py [--examples N] [--seconds S] [--out DIR]

Random mail from tests/mail_strategies.py is stored, analysed and acted on in
a throwaway database; every exception is a crash: it is counted, and the mail
that caused it is written to DIR for a regression test. Prints the number of
messages tried and crashes (by exception type and place).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings

from bot.clock import FixedClock
from bot.config import load_config
from bot.context import make_context
from storage.db import open_database
from tests.harness import write_config
from tests.mail_strategies import mail, run_through

# Defaults: a few minutes on one core of the shared machines.
DEFAULT_EXAMPLES = 20_000
DEFAULT_SECONDS = 600.0
# Per-message time over which a message counts as a hang candidate.
SLOW_SECONDS = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--out", type=Path, default=Path("var/fuzz-crashes"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rootnotify-fuzz-"))
    config = load_config(write_config(work, smtp_port=1, relay_port=1, outgoing_mode="maildir"))
    db = open_database(config.storage_url)
    ctx = make_context(config, db, FixedClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC)))
    tried = 0
    slow = 0
    crashes: Counter[str] = Counter()
    started = time.monotonic()

    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(raw=mail())
    def fuzz(raw: bytes) -> None:
        nonlocal tried, slow
        if time.monotonic() - started > args.seconds:
            return
        tried += 1
        t0 = time.monotonic()
        try:
            run_through(ctx, raw)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            key = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            crashes[key] += 1
            if crashes[key] == 1:
                args.out.mkdir(parents=True, exist_ok=True)
                name = hashlib.sha256(raw).hexdigest()[:16]
                (args.out / f"{name}.eml").write_bytes(raw)
                print(f"crash: {key}: {exc!r} -> {args.out / name}.eml", file=sys.stderr)
        if time.monotonic() - t0 > SLOW_SECONDS:
            slow += 1

    fuzz()
    db.dispose()
    elapsed = time.monotonic() - started
    print(f"messages tried: {tried} in {elapsed:.0f} s ({tried / max(elapsed, 1e-9):.0f}/s)")
    print(f"crashes: {sum(crashes.values())} ({len(crashes)} distinct)")
    for key, count in crashes.most_common():
        print(f"  {count:6d}  {key}")
    print(f"slower than {SLOW_SECONDS:.0f} s: {slow}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
