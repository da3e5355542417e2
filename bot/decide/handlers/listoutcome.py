"""What storing one attached certificate list came to, as the event and the load row keep it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.parse.certlists.read import (
    RejectedLine,
)
from storage.models import CertificateListLoad


@dataclass
class ListOutcome:
    """One attached list: rows read, lines rejected, what was new, whether a limit cut it."""

    source: str
    rows: int = 0
    rejected: int = 0
    first_rejections: list[RejectedLine] = field(default_factory=list)
    limit: str | None = None
    seconds: float = 0.0
    new_certificates: int = 0
    new_domains: int = 0
    chunks: int = 0
    longest_chunk: float = 0.0  # seconds of the longest chunk's write transaction

    def event_data(self) -> dict[str, Any]:
        return {"file": self.source, "rows": self.rows, "rejected": self.rejected,
                "new_certificates": self.new_certificates, "new_domains": self.new_domains,
                "limit": self.limit, "seconds": round(self.seconds, 3), "chunks": self.chunks,
                "longest_chunk_seconds": round(self.longest_chunk, 3),
                "first_rejections": _rejections_json(self.first_rejections)}

    def load(self, inbound_id: int, position: int, incident_id: str,
             complete: bool) -> CertificateListLoad:
        return CertificateListLoad(
            inbound_id=inbound_id, position=position, incident_id=incident_id,
            source=self.source, rows=self.rows, rejected=self.rejected,
            new_certificates=self.new_certificates, new_domains=self.new_domains,
            limit=self.limit, first_rejections=json.dumps(_rejections_json(self.first_rejections)),
            seconds=self.seconds, chunks=self.chunks, longest_chunk=self.longest_chunk,
            complete=complete)

    @classmethod
    def from_load(cls, load: CertificateListLoad) -> ListOutcome:
        rejections = [RejectedLine(r["line"], r["text"], r["reason"], r["source"])
                      for r in json.loads(load.first_rejections)]
        return cls(source=load.source, rows=load.rows, rejected=load.rejected,
                   first_rejections=rejections, limit=load.limit, seconds=load.seconds,
                   new_certificates=load.new_certificates, new_domains=load.new_domains,
                   chunks=load.chunks, longest_chunk=load.longest_chunk)


def _rejections_json(rejections: list[RejectedLine]) -> list[dict[str, Any]]:
    return [{"line": r.line, "source": r.source, "reason": r.reason, "text": r.text}
            for r in rejections]
