"""Write one incident's dossier to a text stream in one format: md, json or csv.

Certificates are streamed from the database row by row (an incident can have
millions), never gathered into a list first.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from itertools import islice
from typing import Any, TextIO

from sqlmodel import Session

from bot.clock import iso
from bot.context import Context
from bot.operator.export.markdown import DOMAINS_SHOWN, render_markdown
from bot.operator.views import incident_json
from storage import queries
from storage.models import Certificate, Incident

FORMATS = ("md", "json", "csv")
GENERATOR = "rootnotify"

CSV_COLUMNS = ("type", "sha256", "serial", "issuer", "subject", "dns_names", "not_before",
               "not_after", "precertificate", "crtsh_id", "inbound_id")


def certificate_record(c: Certificate) -> dict[str, Any]:
    return {"sha256": c.sha256, "serial": c.serial, "issuer": c.issuer, "subject": c.subject,
            "dns_names": [n for n in c.dns_names.split("\n") if n],
            "not_before": iso(c.not_before), "not_after": iso(c.not_after),
            "precertificate": c.precertificate, "crtsh_id": c.crtsh_id,
            "inbound_id": c.inbound_id}


def _csv(session: Session, incident_id: str, out: TextIO) -> None:
    """Certificate rows, then one row per unique domain (`type` says which)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in queries.certificates_of(session, incident_id):
        r = certificate_record(c)
        writer.writerow(["certificate", r["sha256"] or "", r["serial"] or "", r["issuer"] or "",
                         r["subject"] or "", " ".join(r["dns_names"]), r["not_before"] or "",
                         r["not_after"] or "", "true" if r["precertificate"] else "false",
                         r["crtsh_id"] or "", r["inbound_id"] or ""])
    for name in queries.domains_of(session, incident_id):
        writer.writerow(["domain", "", "", "", "", name, "", "", "", "", ""])


def _json(session: Session, data: dict[str, Any], out: TextIO) -> None:
    """The show JSON, then the certificate and domain rows streamed into the same object."""
    head = json.dumps(data, indent=2, ensure_ascii=False)
    out.write(head[:-2] + ',\n  "certificate_rows": [')
    first = True
    for c in queries.certificates_of(session, data["id"]):
        out.write(("\n    " if first else ",\n    ")
                  + json.dumps(certificate_record(c), ensure_ascii=False))
        first = False
    out.write("\n  ],\n  \"domain_rows\": [")
    first = True
    for name in queries.domains_of(session, data["id"]):
        out.write(("\n    " if first else ",\n    ") + json.dumps(name, ensure_ascii=False))
        first = False
    out.write("\n  ]\n}\n")


def dossier_data(session: Session, ctx: Context, incident: Incident) -> dict[str, Any]:
    data = incident_json(session, incident, ctx.clock.now())
    data["exported_at"] = iso(ctx.clock.now())
    data["generator"] = GENERATOR
    data["timezone"] = ctx.config.bot.timezone.key
    return data


def markdown_lines(session: Session, ctx: Context, data: dict[str, Any]) -> Iterator[str]:
    domains = list(islice(queries.domains_of(session, data["id"]), DOMAINS_SHOWN))
    return render_markdown(data, ctx.config.bot.timezone, ctx.clock.now(), domains)


def write_format(session: Session, ctx: Context, incident: Incident, fmt: str,
                 out: TextIO) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if fmt == "csv":
        _csv(session, incident.id, out)
        return
    data = dossier_data(session, ctx, incident)
    if fmt == "json":
        _json(session, data, out)
        return
    for line in markdown_lines(session, ctx, data):
        out.write(line + "\n")
