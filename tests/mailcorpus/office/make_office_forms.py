"""Make the .docx and PDF notification forms with LibreOffice, as a CA's word processor would.

Run once, where LibreOffice is installed (`apt-get install
libreoffice-writer-nogui`; the tests do not need it):

    python tests/mailcorpus/office/make_office_forms.py

Each form is written as HTML (the `.html` files beside this script, kept for
review) and converted by headless LibreOffice (`soffice --convert-to`) to
`.docx` (the "MS Word 2007 XML" filter, what Word opens) and to PDF
(writer_pdf_Export). The results are committed: python-docx and reportlab,
which the other tests use, would only read back what they wrote themselves.
`ANSWERS` is what a careful reader finds in each form.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The labels of the blank form (DESIGN.md, "Notification form fields").
LABELS = {
    "ca_name": "CA name",
    "category": "Incident type",
    "incident_at": "When did the incident occur",
    "detected_by": "Who detected the incident",
    "perpetrator": "Who perpetrated the incident (if known)",
    "discovered_at": "When the CA discovered the incident",
    "location": "Where the incident occurred",
    "affected_roots": "Which roots (and end-entity certificates, if requested) were affected",
    "affected_subcas": "Which sub-CAs were affected",
    "root_cause": "What the CA believes the underlying cause is",
    "remediation": "Remedial measures taken or planned",
}
ANSWERS = {
    "ca_name": "Example CA",
    "category": "key-compromise",
    "incident_at": "2026-11-25 14:05 CET",
    "detected_by": "Our HSM audit log review",
    "perpetrator": "unknown",
    "discovered_at": "2026-11-25 16:30 CET",
    "location": "Primary data centre, Frankfurt",
    "affected_roots": "Example Root R1",
    "affected_subcas": "Example Issuing CA 3",
    "root_cause": "An operator exported a key backup to an unprotected share",
    "remediation": "Key revoked, share removed, four-eyes control added",
}
# In the table form these are rows of a two-column table, the rest paragraphs.
TABLE_KEYS = ("location", "affected_roots", "affected_subcas", "root_cause", "remediation")


def _paragraphs(keys: list[str]) -> str:
    return "\n".join(f"<p><b>{html.escape(LABELS[k])}:</b> {html.escape(ANSWERS[k])}</p>"
                     for k in keys)


def _table(keys: tuple[str, ...]) -> str:
    rows = "\n".join(f"<tr><td width=\"45%\">{html.escape(LABELS[k])}</td>"
                     f"<td width=\"55%\">{html.escape(ANSWERS[k])}</td></tr>" for k in keys)
    return f'<table border="1" width="100%" cellpadding="4">\n{rows}\n</table>'


def sources() -> dict[str, str]:
    head = ('<html><head><meta charset="utf-8"><title>Security incident notification</title>'
            '</head><body>\n<h1>Security incident notification</h1>\n'
            '<p>To the root program, as required within 24 hours:</p>\n')
    everything = list(ANSWERS)
    return {
        "form-paragraphs": head + _paragraphs(everything) + "\n</body></html>\n",
        "form-table": head + _paragraphs([k for k in everything if k not in TABLE_KEYS])
        + "\n" + _table(TABLE_KEYS) + "\n</body></html>\n",
    }


def convert(source: Path, target_filter: str, out: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            ["soffice", "--headless", f"-env:UserInstallation=file://{profile}",
             "--infilter=HTML (StarWriter)", "--convert-to", target_filter, "--outdir",
             str(out), str(source)],
            capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": profile})
    if done.returncode != 0:
        raise SystemExit(f"soffice failed on {source.name}: {done.stderr}")


def main() -> None:
    if shutil.which("soffice") is None:
        raise SystemExit("soffice not found: apt-get install libreoffice-writer-nogui")
    for name, text in sources().items():
        source = HERE / f"{name}.html"
        source.write_text(text)
        convert(source, "docx:MS Word 2007 XML", HERE)
        convert(source, "pdf:writer_pdf_Export", HERE)
        print(f"{name}: .docx and .pdf written")


if __name__ == "__main__":
    main()
