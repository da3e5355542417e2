"""Benchmark: rootnotify's SMTP intake rate as a ratio of a no-op aiosmtpd sink's, same run.

    python bench/intake.py [--messages 1000] [--sessions 8]

Starts (a) a no-op aiosmtpd server whose handler answers 250 and keeps
nothing, and (b) `rootnotify serve` on the embedded default storage (SQLite,
synchronous=FULL) relaying to a sink; drives each from a separate load
process with N concurrent SMTP sessions sending distinct ~8 KB notification
forms. Prints accepted messages per second for each and the ratio b/a, the
time from 250 to the acknowledgement reaching the sink (median, p99), and
checks that every accepted message was stored and acknowledged exactly once.
"""

from __future__ import annotations

import argparse
import email
import email.parser
import json
import os
import signal
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

CA = "incidents@exampleca.test"
BOT = "rootnotify@program.test"
PADDING_LINE = "Additional detail about the affected issuance pipeline and its checks.\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


def notification(i: int, run: str) -> bytes:
    padding = PADDING_LINE * 95  # brings the message to about 8 KB
    body = (
        "CA name: Example CA\n"
        "Incident type: mis-issuance\n"
        "When did the incident occur: 2026-11-25T14:05:00Z\n"
        f"Who detected the incident: researcher number {i}\n"
        "When the CA discovered the incident: 2026-11-26T09:30:00Z\n"
        "Where the incident occurred: Example Issuing CA 2\n"
        "Which roots (and end-entity certificates, if requested) were affected: Root R1\n"
        "Which sub-CAs were affected: Example Issuing CA 2\n"
        "What the CA believes the underlying cause is: a skipped CAA check\n"
        f"Remedial measures taken or planned: fixed\n"
        f"Any other information the CA believes appropriate:\n{padding}"
    )
    return (f"From: {CA}\r\nTo: {BOT}\r\nSubject: Incident {i}\r\n"
            f"Message-ID: <bench-{run}-{i}@exampleca.test>\r\n"
            f"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
            + body.replace("\n", "\r\n")).encode()


# --- the load generator (runs in its own process) -------------------------------------

def generate(port: int, messages: int, sessions: int, run: str, out: str) -> None:
    accepted: dict[str, float] = {}
    lock = threading.Lock()
    indices = list(range(messages))
    payloads = {i: notification(i, run) for i in indices}

    def worker(mine: list[int]) -> None:
        smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="load.test", timeout=120)
        for i in mine:
            smtp.sendmail(CA, [BOT], payloads[i])
            done = time.time()
            with lock:
                accepted[f"<bench-{run}-{i}@exampleca.test>"] = done
        smtp.quit()

    threads = [threading.Thread(target=worker, args=(indices[k::sessions],))
               for k in range(sessions)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    Path(out).write_text(json.dumps({"elapsed": elapsed, "accepted": accepted}))


def run_load(port: int, messages: int, sessions: int, run: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    subprocess.run([sys.executable, __file__, "--generate", str(port), str(messages),
                    str(sessions), run, out], check=True)
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return data


# --- the no-op server (its own process) ------------------------------------------------

def noop_server(port: int) -> None:
    from aiosmtpd.controller import Controller

    class Noop:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            return "250 OK"

    controller = Controller(Noop(), hostname="127.0.0.1", port=port, server_hostname="noop")
    controller.start()
    threading.Event().wait()


# --- the sink relay that receives rootnotify's acknowledgements ---------------------

HEADERS = email.parser.BytesHeaderParser()


class AckSink:
    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        now = time.time()
        # Headers only, as a relay reads them: the sink shares the CPU with serve.
        msg = HEADERS.parsebytes(envelope.original_content or envelope.content)
        if msg.get("Auto-Submitted") == "auto-replied" and CA in envelope.rcpt_tos:
            with self.lock:
                self.arrivals.setdefault(str(msg.get("In-Reply-To")), []).append(now)
                self.count += 1
        return "250 OK"


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def cpu_report(root: int, messages: int) -> str:
    """CPU seconds used so far by `serve`'s processes, each named by its role.

    The intake process spawns the worker and the sender (and multiprocessing's
    resource tracker); the worker spawns the analysis processes.
    """
    tree = _children()
    roles: list[tuple[str, int]] = [("intake", root)]
    for pid in tree.get(root, []):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"resource_tracker" in cmdline:
            continue
        grandchildren = [c for c in tree.get(pid, []) if b"resource_tracker"
                         not in Path(f"/proc/{c}/cmdline").read_bytes()]
        roles.append(("worker" if grandchildren else "sender", pid))
        roles += [("analysis", c) for c in grandchildren]
    used = [(role, _cpu_seconds(pid)) for role, pid in roles]
    total = sum(seconds for _, seconds in used)
    return ("CPU of serve's processes since start (imports included): "
            + ", ".join(f"{role} {seconds:.1f} s" for role, seconds in used)
            + f"; total {total:.1f} s, {total / max(messages, 1) * 1000:.1f} ms a message")


def summarize_profile(raw: str, top: int = 25) -> str:
    """py-spy's collapsed stacks to the functions of rootnotify where samples fall (inclusive)."""
    from collections import Counter

    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = {f.split(" (")[0] + " (" + f.split("(")[-1].split(":")[0] + ")"
                  for f in stack.split(";")
                  if any(part in f for part in ("(bot/", "(storage/", "/bot/", "/storage/"))}
        for frame in frames:
            inclusive[frame] += int(count)
    lines = [f"{n / max(total, 1):6.1%}  {frame}" for frame, n in inclusive.most_common(top)]
    return f"samples: {total}\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--generate", nargs=5)
    parser.add_argument("--noop-server", type=int)
    parser.add_argument("--profile", action="store_true",
                        help="run rootnotify under pyinstrument and print where time goes")
    args = parser.parse_args()
    if args.generate:
        port, messages, sessions, run, out = args.generate
        generate(int(port), int(messages), int(sessions), run, out)
        return
    if args.noop_server:
        noop_server(args.noop_server)
        return

    from aiosmtpd.controller import Controller

    print(f"cores: {os.cpu_count()}, messages: {args.messages}, sessions: {args.sessions}")
    # (a) the no-op baseline
    noop_port = free_port()
    noop = subprocess.Popen([sys.executable, __file__, "--noop-server", str(noop_port)])
    try:
        wait_port(noop_port)
        base = run_load(noop_port, args.messages, args.sessions, "noop")
    finally:
        noop.terminate()
        noop.wait()
    base_rate = len(base["accepted"]) / base["elapsed"]
    print(f"(a) no-op aiosmtpd:  {base_rate:8.1f} msg/s")

    # (b) rootnotify serve, relaying acknowledgements to a sink in this process
    sink = AckSink()
    sink_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port, server_hostname="sink")
    controller.start()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = Path(tmp) / "config.toml"
        config.write_text(f"""
[bot]
address = "{BOT}"
# Every one of the load's mails comes from one contact; lift the loop guard.
max_auto_replies_per_day = 1000000
[smtp]
port = {port}
# The load generator is one client address, as the program's MX would be.
unlimited_clients = ["127.0.0.1"]
[outgoing]
mode = "smtp"
port = {sink_port}
from = "Root Program <{BOT}>"
[staff]
addresses = []
auth = "none"
[[ca]]
name = "Example CA"
contacts = ["{CA}"]
""")
        command = [sys.executable, "-m", "bot.cli", "--config", str(config), "serve"]
        log_path = os.environ.get("BENCH_LOG", os.devnull)  # the server's log, if wanted
        with open(log_path, "w") as log:
            server = subprocess.Popen(command, cwd=ROOT, stderr=log)
        spy = None
        try:
            wait_port(port)
            if args.profile:
                # py-spy samples every thread of both processes (the worker does
                # its work in threads, which pyinstrument would not see).
                spy = subprocess.Popen(["py-spy", "record", "--pid", str(server.pid),
                                        "--subprocesses", "--idle", "--format", "raw",
                                        "--rate", "250", "--nonblocking",
                                        "-o", str(Path(tmp) / "prof.txt")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)  # let it attach
            loaded = run_load(port, args.messages, args.sessions, "rootnotify")
            rate = len(loaded["accepted"]) / loaded["elapsed"]
            print(f"(b) rootnotify serve: {rate:8.1f} msg/s")
            print(f"ratio b/a: {rate / base_rate:.2f} (goal >= 0.5)")
            deadline = time.monotonic() + 180
            while sink.count < len(loaded["accepted"]) and time.monotonic() < deadline:
                time.sleep(0.1)
            drained = time.time() - max(loaded["accepted"].values())
            print(f"backlog drained (all acknowledged) {drained:.1f} s after the load stopped")
            print(cpu_report(server.pid, len(loaded["accepted"])))
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
        finally:
            server.terminate()
            server.wait(60)
            controller.stop()
        db = sqlite3.connect(Path(tmp) / "var" / "rootnotify.db")
        stored = db.execute("select count(*) from inbound_message").fetchone()[0]
        incidents = db.execute("select count(*) from incident").fetchone()[0]
        if args.profile:
            raw_profile = (Path(tmp) / "prof.txt").read_text()
            Path(os.environ.get("BENCH_PROFILE_OUT", os.devnull)).write_text(raw_profile)
            print(summarize_profile(raw_profile))

    latencies = sorted(arrivals[0] - loaded["accepted"][mid]
                       for mid, arrivals in sink.arrivals.items() if mid in loaded["accepted"])
    twice = [mid for mid, arrivals in sink.arrivals.items() if len(arrivals) > 1]
    missing = [mid for mid in loaded["accepted"] if mid not in sink.arrivals]
    if latencies:
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"250 -> acknowledgement at the relay: median {statistics.median(latencies):.2f} s, "
              f"p99 {p99:.2f} s (goal p99 < 5 s); fastest {latencies[0]:.2f} s")
    print(f"accepted {len(loaded['accepted'])}, stored {stored}, incidents {incidents}, "
          f"acknowledged {len(sink.arrivals)}, acknowledged twice {len(twice)}, "
          f"not acknowledged {len(missing)}")
    ok = stored == incidents == len(loaded["accepted"]) and not twice and not missing
    print("exactly once: " + ("yes" if ok else "NO"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
