"""Attachments and HTML to text: what a person would read from each, and bad files survived."""

from __future__ import annotations

import io
import zipfile

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.parse.forms.documents import (
    MAX_NESTING,
    MAX_PDF_PAGES,
    MAX_TEXT_CHARS,
    docx_to_text,
    extract_text,
    html_to_text,
    pdf_to_text,
)
from tests.form_factory import (
    ANSWERS,
    form_text,
    label,
    make_docx,
    make_encrypted_pdf,
    make_pdf_acroform,
    make_pdf_text,
)

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def test_html_paragraphs_breaks_rows_and_lists() -> None:
    html = """<html><head><style>p {color: red}</style>
<script>var x = "CA name: evil";</script></head><body>
<p>Hello,</p><p><b>CA name:</b> Example Trust<br>Incident type: key&nbsp;compromise</p>
<table><tr><td>Who detected the incident</td><td>Our <i>CT</i> monitor</td></tr>
<tr><td>Where the incident occurred:<td>Frankfurt
<tr><th>a</th><th>b</th><th>c</th></tr></table>
<ul><li>Root cause: bug<li>Remediation: fix</ul></body></html>"""
    result = html_to_text(html)
    assert result.error is None
    lines = [ln for ln in result.text.splitlines() if ln]
    assert lines == [
        "Hello,",
        "CA name: Example Trust",
        "Incident type: key compromise",
        "Who detected the incident: Our CT monitor",  # two cells: label and answer
        "Where the incident occurred: Frankfurt",  # unclosed cells and rows still rows
        "a | b | c",
        "Root cause: bug",
        "Remediation: fix",
    ]
    assert "evil" not in result.text and "color" not in result.text


def test_ten_thousand_nested_tables_are_read_flat_and_bounded() -> None:
    depth = 10_000
    html = ("<table><tr><td>" * depth) + "CA name: Example Trust" + ("</td></tr></table>" * depth)
    result = html_to_text(html)
    assert result.text == "CA name: Example Trust"
    assert depth > MAX_NESTING


def test_huge_html_is_cut_at_the_character_limit() -> None:
    result = html_to_text("<p>" + "word " * (MAX_TEXT_CHARS // 2) + "</p>")
    assert result.truncated and len(result.text) <= MAX_TEXT_CHARS
    assert result.error is not None


def test_docx_paragraphs_then_table_rows_as_label_value() -> None:
    result = docx_to_text(make_docx(table_keys=("root_cause", "remediation")))
    assert result.error is None
    lines = result.text.splitlines()
    assert lines[0] == "Security incident notification"
    assert f"{label('ca_name')}: Example Trust" in lines
    assert lines[-2:] == [
        f"{label('root_cause')}: {ANSWERS['root_cause']}",
        f"{label('remediation')}: {ANSWERS['remediation']}",
    ]


def test_corrupt_docx_says_so() -> None:
    result = extract_text("form.docx", DOCX, b"PK\x03\x04not really a zip")
    assert result.text == "" and result.error is not None and "corrupt" in result.error


def test_docx_zip_bomb_is_not_unpacked() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/document.xml", b"<a/>" + b" " * (60 * 1024 * 1024))
    result = extract_text("form.docx", DOCX, buf.getvalue())
    assert result.error == "the .docx unpacks to more than 50 MB"


def test_pdf_acroform_fields_with_names_and_tooltips() -> None:
    result = pdf_to_text(make_pdf_acroform({"ca_name": "Example Trust", "location": "Frankfurt"},
                                           tooltips=True))
    assert result.error is None
    assert [(f.name, f.tooltip, f.value) for f in result.fields] == [
        ("ca_name", "CA name", "Example Trust"),
        ("location", "Where the incident occurred", "Frankfurt"),
    ]


def test_pdf_text_without_fields() -> None:
    result = pdf_to_text(make_pdf_text(form_text().splitlines()))
    assert result.fields == () and result.error is None
    assert f"CA name: {ANSWERS['ca_name']}" in result.text.splitlines()


def test_encrypted_pdf_with_user_password_is_unreadable() -> None:
    result = pdf_to_text(make_encrypted_pdf("secret"))
    assert result.error == "the PDF is encrypted with a password" and result.text == ""


def test_pdf_with_owner_password_only_opens() -> None:
    result = pdf_to_text(make_encrypted_pdf(""))
    assert result.error is None and "CA name: Example Trust" in result.text


def test_corrupt_and_truncated_pdfs_say_so() -> None:
    good = make_pdf_text(["CA name: Example Trust"])
    for data in (b"%PDF-1.7\n garbage", good[: len(good) // 2], b"%PDF-" + bytes(range(256))):
        result = extract_text("form.pdf", "application/pdf", data)
        assert result.error is not None or "Example Trust" in result.text


def test_many_page_pdf_stops_at_the_page_limit() -> None:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf)
    for i in range(MAX_PDF_PAGES + 5):
        pdf.drawString(40, 800, f"page {i + 1}")
        pdf.showPage()
    pdf.save()
    result = pdf_to_text(buf.getvalue())
    assert f"page {MAX_PDF_PAGES}" in result.text and f"page {MAX_PDF_PAGES + 1}" not in result.text
    assert result.error == f"the PDF has {MAX_PDF_PAGES + 5} pages; only the first 50 were read"


def test_forty_megabyte_attachment_is_not_opened() -> None:
    result = extract_text("form.pdf", "application/pdf", b"%PDF-1.4" + b"0" * (40 * 1024 * 1024))
    assert result.text == "" and (result.error or "").startswith("too large to be a form")


def test_text_files_decoded_and_unknown_formats_named() -> None:
    assert extract_text("form.txt", "text/plain", "CA name: Zürich CA".encode()).text == (
        "CA name: Zürich CA")
    assert extract_text("form.txt", "text/plain", "CA name: Zürich CA".encode("cp1252")).text == (
        "CA name: Zürich CA")
    assert extract_text("form.md", "application/octet-stream", b"**CA name:** X").text == (
        "**CA name:** X")
    old_word = extract_text("form.doc", "application/msword", b"\xd0\xcf\x11\xe0")
    assert old_word.text == "" and "format not read" in (old_word.error or "")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=3000))
def test_html_to_text_never_raises(html: str) -> None:
    assert isinstance(html_to_text(html).text, str)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["<table>", "<tr>", "<td>", "</td>", "</tr>", "</table>",
                                 "<p>", "</p>", "<br>", "<script>", "</script>", "<pre>",
                                 "</pre>", "CA name:", " x ", "<!--", "-->", "&amp;", "<"]),
                max_size=200))
def test_html_to_text_never_raises_on_tag_soup(pieces: list[str]) -> None:
    assert isinstance(html_to_text("".join(pieces)).text, str)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4000), st.sampled_from(["a.pdf", "a.docx", "a.html", "a.txt", "a.bin"]))
def test_extract_text_never_raises_on_garbage(data: bytes, name: str) -> None:
    assert isinstance(extract_text(name, "application/octet-stream", data).text, str)
