"""`rootnotify export`: a whole scenario's dossier, checked section by section against the record.

The scenario is built by the real pipeline (`rootnotify ingest`, `tick`); the
Markdown is compared with `show --json`, and the zip's manifest is checked by
recomputing every hash.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from bot.operator.export.markdown import SECTIONS
from bot.operator.export.writers import CSV_COLUMNS
from tests.test_cli_and_ingest import rootnotify
from tests.test_operator_view import (
    FIRST_ID,
    INCIDENT,
    STAFF_ID,
    UPDATE_ID,
    Scenario,
    build_scenario,
    show_json,
    staff_request,
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    s = build_scenario(tmp_path_factory.mktemp("export"))
    s.staff_ok = staff_request(s)  # type: ignore[attr-defined]
    return s


def sections(markdown: str) -> dict[str, str]:
    """`## Title` → the text under it."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in `text`."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows[2:]]


@pytest.fixture(scope="module")
def dossier(scenario: Scenario) -> tuple[dict[str, str], dict]:
    markdown = rootnotify(scenario.config, "export", INCIDENT, "--format", "md").stdout
    assert markdown.startswith(f"# Incident dossier {INCIDENT}: Example CA\n")
    return sections(markdown), show_json(scenario)


def test_the_report_has_every_section_in_order(dossier):
    parts, _ = dossier
    assert list(parts) == list(SECTIONS)


def test_summary(dossier):
    parts, data = dossier
    summary = dict((k.strip("*"), v) for k, v in table_rows(parts["Summary"]))
    assert summary["Incident"] == INCIDENT and summary["CA"] == "Example CA"
    assert summary["Category"] == "mis-issuance" and summary["Status"] == "open"
    assert summary["Notified (received)"] == "2026-11-26 13:00 UTC (2026-11-26 14:00 CET)"
    assert summary["24-hour verdict"] == "met"
    assert summary["Missing form fields"] == "none"
    inbound = sum(m["direction"] == "in" for m in data["messages"])
    assert summary["Messages"].startswith(f"{inbound} in, ")


def test_form_with_earlier_answers_escaped_for_markdown(dossier):
    parts, data = dossier
    form_text, earlier_text = parts["Notification form"].split("### Earlier answers")
    current = {row[0]: row for row in table_rows(form_text)}
    assert len(current) == len(data["form"])
    remediation = current["Remedial measures taken or planned"]
    # Text from mail can break neither the table nor a viewer: pipes and HTML escaped.
    # No live HTML, and no entities either: a backslash keeps a tag text (CommonMark).
    assert remediation[1] == "Fixed the check; revoked all 12 \\| \\<b>now\\</b>"
    assert remediation[3] == f"`{UPDATE_ID}`"
    earlier = table_rows(earlier_text)
    assert earlier == [["Remedial measures taken or planned",
                        "Fixed the check; revoking 12 certificates", "2026-11-26 13:00 UTC",
                        f"`{FIRST_ID}`"]]


def test_timeline_lists_every_event_with_both_times_cause_and_signature(dossier):
    parts, data = dossier
    rows = table_rows(parts["Timeline"])
    assert len(rows) == len(data["events"])
    assert [r[2] for r in rows] == [e["kind"] for e in data["events"]]
    opened = rows[0]
    assert opened[:4] == ["2026-11-26 13:00 UTC", "2026-11-26 14:00:00 CET", "incident-opened",
                          "R1"]
    assert opened[4] == "mail #1 " + FIRST_ID.replace("<", "\\<")
    assert opened[5] == "unsigned"
    changed = next(r for r in rows if r[2] == "field-changed")
    assert "update-1@exampleca.test" in changed[4] and changed[3] == "R1a"


def test_requests_and_deadlines_say_how_each_was_met(scenario, dossier):
    parts, data = dossier
    rows = table_rows(parts["Requests and deadlines"])
    # Staff requested a certificate list in the scenario: it is a row of the dossier.
    assert scenario.staff_ok
    assert any(d["kind"] == "certificate-list" for d in data["deadlines"])
    assert [r[0].split(":")[0] for r in rows] == [d["kind"] for d in data["deadlines"]]
    for row, d in zip(rows, data["deadlines"], strict=True):
        assert row[5] == d["state"]
        if d["state"] == "satisfied":
            assert row[6].startswith("met ")


def test_notices_certificates_and_checklist(dossier):
    parts, data = dossier
    notices, proposals = parts["Notices and proposals"].split("### Proposals from the CA")
    assert len([r for r in table_rows(notices) if r[0] != "–"]) == len(data["notices"])
    assert len([r for r in table_rows(proposals) if r[0] != "–"]) == len(data["proposals"])
    certs = parts["Certificates and domains"]
    assert f"- Certificates: **{data['certificates']['count']}**" in certs
    assert f"- Unique domains: **{data['certificates']['unique_domains']}**" in certs
    checklist = parts["Final-report checklist"]
    assert "No final report has been received." in checklist
    items = re.findall(r"^- \[( |x)\] (\d+)\. .* \(`(\w+)`\)$", checklist, flags=re.MULTILINE)
    assert [key for _, _, key in items] == data["final_report"]["missing"]
    assert [int(n) for _, n, _ in items] == list(range(1, 16))


def test_messages_list_every_mail_with_signature_status_and_hash(scenario, dossier):
    parts, data = dossier
    rows = table_rows(parts["Messages"])
    assert [(r[1], r[6].strip("`"), r[7], r[9].strip("`")) for r in rows] == [
        (m["direction"], m["message_id"], m["smime"], m["sha256"]) for m in data["messages"]]
    assert any(r[6] == f"`{STAFF_ID}`" for r in rows)  # the staff request is listed


def test_json_holds_the_show_json_and_the_certificate_rows(scenario):
    data = json.loads(rootnotify(scenario.config, "export", INCIDENT, "--format",
                                 "json").stdout)
    shown = show_json(scenario)
    for key in ("id", "ca", "status", "category", "notified_at", "form", "deadlines",
                "certificates", "final_report", "notices", "messages", "events"):
        assert data[key] == shown[key], key
    assert data["certificate_rows"] == [] and data["domain_rows"] == []
    assert data["exported_at"].endswith("+00:00") and data["timezone"] == "Europe/Berlin"


def test_csv_has_the_certificate_columns_and_one_row_per_certificate_and_domain(scenario,
                                                                                 tmp_path):
    out = tmp_path / "certs.csv"
    rootnotify(scenario.config, "export", INCIDENT, "--format", "csv", "-o", str(out))
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    counts = show_json(scenario)["certificates"]
    assert sum(r[0] == "certificate" for r in rows[1:]) == counts["count"]
    assert sum(r[0] == "domain" for r in rows[1:]) == counts["unique_domains"]


def test_zip_with_raw_mail_and_a_manifest_that_checks(scenario, tmp_path):
    archive = tmp_path / "dossier.zip"
    result = rootnotify(scenario.config, "export", INCIDENT, "--format", "md", "--with-raw",
                        "-o", str(archive))
    data = show_json(scenario)
    assert f"with {len(data['messages'])} raw message(s)" in result.stderr
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        manifest = zf.read("MANIFEST.sha256").decode()
        listed = dict(reversed(line.split("  ", 1)) for line in manifest.splitlines())
        assert set(listed) == names - {"MANIFEST.sha256"}
        for name, digest in listed.items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == digest, name
        assert f"{INCIDENT}.md" in listed
        emls = {n for n in names if n.endswith(".eml")}
        assert len(emls) == len(data["messages"])
        # Each raw mail is the very bytes the record's hash names.
        assert {digest for name, digest in listed.items() if name in emls} == {
            m["sha256"] for m in data["messages"]}
        first = next(n for n in emls if n.startswith("messages/in-000001"))
        assert FIRST_ID.encode() in zf.read(first)
        zf.extractall(tmp_path / "unpacked")
    # What the README promises an auditor: `sha256sum -c` (coreutils, on every Debian).
    assert shutil.which("sha256sum"), "sha256sum (coreutils) is needed to check the manifest"
    check = subprocess.run(["sha256sum", "-c", "--quiet", "MANIFEST.sha256"],
                           cwd=tmp_path / "unpacked", capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_bad_requests_are_refused_with_a_reason(scenario):
    no_path = rootnotify(scenario.config, "export", INCIDENT, "--with-raw", check=False)
    assert no_path.returncode == 2 and "-o PATH" in no_path.stderr
    bad = rootnotify(scenario.config, "export", INCIDENT, "--format", "pdf", check=False)
    assert bad.returncode == 2 and "pdf" in bad.stderr
    missing = rootnotify(scenario.config, "export", "INC-2026-0099", check=False)
    assert missing.returncode == 1 and "no incident INC-2026-0099" in missing.stderr


def test_export_writes_to_a_file_the_same_report(scenario, tmp_path: Path):
    out = tmp_path / "dossier.md"
    rootnotify(scenario.config, "export", INCIDENT, "-o", str(out))
    assert list(sections(out.read_text())) == list(SECTIONS)
