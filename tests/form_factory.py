"""Real form documents for tests: .docx (python-docx), PDFs (reportlab), HTML and RFC mails."""

from __future__ import annotations

import io
from email.message import EmailMessage

from bot.rules.rulesets import FORM_FIELDS_BY_KEY

# One filled form, as a CA would answer it; tests compare against these values.
ANSWERS: dict[str, str] = {
    "ca_name": "Example Trust",
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


def label(key: str) -> str:
    return FORM_FIELDS_BY_KEY[key].label


def form_text(answers: dict[str, str] = ANSWERS) -> str:
    return "\n".join(f"{label(k)}: {v}" for k, v in answers.items())


def make_docx(answers: dict[str, str] = ANSWERS, *, table_keys: tuple[str, ...] = ()) -> bytes:
    """A .docx: a heading, one paragraph per answer, and `table_keys` in a 2-column table."""
    import docx

    document = docx.Document()
    document.add_heading("Security incident notification", level=1)
    for key, value in answers.items():
        if key not in table_keys:
            document.add_paragraph(f"{label(key)}: {value}")
    if table_keys:
        table = document.add_table(rows=0, cols=2)
        for key in table_keys:
            row = table.add_row().cells
            row[0].text = label(key)
            row[1].text = answers[key]
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def make_pdf_text(lines: list[str]) -> bytes:
    """A PDF of plain text lines, no form fields."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4)
    y = 800
    for line in lines:
        pdf.drawString(40, y, line)
        y -= 16
    pdf.save()
    return buf.getvalue()


def make_pdf_acroform(
    values: dict[str, str], *, names: dict[str, str] | None = None, tooltips: bool = False
) -> bytes:
    """A PDF form with one text field per key, filled with `values`.

    Field names are the keys unless `names` maps a key to another name;
    with `tooltips` each field's tooltip is the template label.
    """
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4)
    y = 800
    for key, value in values.items():
        pdf.drawString(40, y, label(key))
        pdf.acroForm.textfield(
            name=(names or {}).get(key, key),
            tooltip=label(key) if tooltips else None,
            value=value,
            x=300, y=y - 4, width=250, height=16,
        )
        y -= 24
    pdf.save()
    return buf.getvalue()


def make_encrypted_pdf(user_password: str = "secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf_text([form_text()]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def make_html(answers: dict[str, str] = ANSWERS) -> str:
    rows = "".join(
        f"<tr><td><b>{label(k)}</b></td><td>{v}</td></tr>" for k, v in answers.items()
    )
    return (
        "<html><head><style>td{padding:2px}</style>"
        "<script>document.write('CA name: not this')</script></head><body>"
        "<p>Dear program,</p><p>our notification:</p>"
        f"<table>{rows}</table><p>Regards,<br>Jane</p></body></html>"
    )


def make_mail(
    body: str | None = None,
    *,
    html: str | None = None,
    subject: str = "Security incident notification",
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    forwarded: bytes | None = None,
) -> bytes:
    """An RFC 5322 mail from a CA contact; attachments are (filename, mime type, data)."""
    msg = EmailMessage()
    msg["From"] = "Jane Doe <jane@example-trust.test>"
    msg["To"] = "rootnotify@program.test"
    msg["Subject"] = subject
    msg["Date"] = "Wed, 25 Nov 2026 18:00:00 +0100"
    msg["Message-ID"] = "<n1@example-trust.test>"
    if body is not None:
        msg.set_content(body)
    if html is not None:
        if body is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    if body is None and html is None:
        msg.set_content("Please see the attachment.")
    for filename, mime, data in attachments:
        maintype, subtype = mime.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    if forwarded is not None:
        from email import message_from_bytes, policy

        inner = message_from_bytes(forwarded, policy=policy.default)
        msg.add_attachment(inner, filename="forwarded.eml")
    return msg.as_bytes()
