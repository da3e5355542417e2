"""The dossier with its evidence: a zip of the report, every raw message and a SHA-256 manifest.

`MANIFEST.sha256` is in `sha256sum` format, so after unpacking,
`sha256sum -c MANIFEST.sha256` checks that nothing was changed. Inbound mail
is stored as received; outbound mail as it was handed to the relay.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

from sqlmodel import Session

from bot.context import Context
from bot.operator.export.writers import write_format
from storage import queries
from storage.models import Incident

MANIFEST = "MANIFEST.sha256"


class _HashingWriter(io.RawIOBase):
    """Passes bytes to a zip entry and hashes them on the way, so nothing is read twice."""

    def __init__(self, target: io.BufferedIOBase | zipfile.ZipExtFile | object) -> None:
        self.target = target
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.digest.update(data)
        self.target.write(data)  # type: ignore[attr-defined]
        return len(data)


def _entry(zf: zipfile.ZipFile, name: str, date_time: tuple[int, ...],
           fill: Callable[[io.BufferedIOBase], None]) -> str:
    info = zipfile.ZipInfo(name, date_time=date_time[:6])  # type: ignore[arg-type]
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as raw:
        hashing = _HashingWriter(raw)
        fill(io.BufferedWriter(hashing))  # type: ignore[arg-type]
    return hashing.digest.hexdigest()


def _write_bytes(data: bytes) -> Callable[[io.BufferedIOBase], None]:
    def fill(stream: io.BufferedIOBase) -> None:
        stream.write(data)
        stream.flush()
    return fill


def write_archive(session: Session, ctx: Context, incident: Incident, fmt: str,
                  path: Path) -> int:
    """Write the zip; returns how many raw messages it holds."""
    date_time = ctx.clock.now().timetuple()[:6]
    hashes: list[tuple[str, str]] = []
    count = 0
    with zipfile.ZipFile(path, "w") as zf:
        def report(stream: io.BufferedIOBase) -> None:
            text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
            write_format(session, ctx, incident, fmt, text)
            text.flush()
            text.detach()

        name = f"{incident.id}.{fmt}"
        hashes.append((_entry(zf, name, date_time, report), name))
        for m in queries.inbound_for(session, incident.id):
            assert m.id is not None
            raw = queries.raw_inbound(session, m.id)
            if raw is None:
                continue
            name = f"messages/in-{m.id:06d}.eml"
            hashes.append((_entry(zf, name, date_time, _write_bytes(raw)), name))
            count += 1
        for o in queries.outbound_for(session, incident.id):
            assert o.id is not None
            name = f"messages/out-{o.id:06d}-{o.kind}.eml"
            hashes.append((_entry(zf, name, date_time, _write_bytes(o.data)), name))
            count += 1
        manifest = "".join(f"{digest}  {name}\n" for digest, name in hashes)
        zf.writestr(zipfile.ZipInfo(MANIFEST, date_time=date_time),  # type: ignore[arg-type]
                    manifest.encode(), compress_type=zipfile.ZIP_DEFLATED)
    return count
