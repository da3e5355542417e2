"""The notification form as CAs send it: what a person reading each mail would extract."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.parse.forms.notification import find_form, looks_like_form_request, parse_form_text
from bot.parse.mail.message import parse_message
from bot.rules.rulesets import CATEGORIES, FORM_FIELDS, RULESET_2019_03, RULESET_2026_02
from tests.form_factory import (
    ANSWERS,
    form_text,
    make_docx,
    make_encrypted_pdf,
    make_html,
    make_mail,
    make_pdf_acroform,
    make_pdf_text,
)

UTC_TZ = ZoneInfo("UTC")

TEMPLATE_FORM = """Hello,

please find our notification below.

CA name: Example Trust
Incident type (one of key-compromise, mis-issuance, public-report, physical, other): mis-issuance
When did the incident occur: 2026-11-25 14:05 UTC
Who detected the incident: Our CT monitor
Who perpetrated the incident (if known): unknown
When the CA discovered the incident: 2026-11-25 16:00
Where the incident occurred: Issuing CA 3, Frankfurt data centre
Which roots (and end-entity certificates, if requested) were affected: Example Root R1
Which sub-CAs were affected:
Example Issuing CA 3
Example Issuing CA 4
What the CA believes the underlying cause is: A template change
allowed a wrong SAN.

It was deployed on 24 Nov.
Remedial measures taken or planned: Rolled back the template.
Any other information the CA believes appropriate:
Other information requested by the program: -

Best regards,
Jane Doe
Example Trust PKI
"""


def mail(body: str, subject: str = "Security incident notification", **extra: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jane Doe <jane@example-trust.test>"
    msg["To"] = "rootnotify@program.test"
    msg["Subject"] = subject
    msg["Date"] = "Wed, 25 Nov 2026 18:00:00 +0000"
    msg["Message-ID"] = "<n1@example-trust.test>"
    msg.set_content(body)
    return msg.as_bytes()


def values(form) -> dict[str, str]:
    return {k: v.value for k, v in form.fields.items()}


def test_template_form_in_plain_body_is_read_field_by_field() -> None:
    form = parse_form_text(TEMPLATE_FORM, RULESET_2019_03, UTC_TZ)
    assert values(form) == {
        "ca_name": "Example Trust",
        "category": "mis-issuance",
        "incident_at": "2026-11-25 14:05 UTC",
        "detected_by": "Our CT monitor",
        "perpetrator": "unknown",  # an answer: the CA does not know
        "discovered_at": "2026-11-25 16:00",
        "location": "Issuing CA 3, Frankfurt data centre",
        "affected_roots": "Example Root R1",
        "affected_subcas": "Example Issuing CA 3\nExample Issuing CA 4",
        "root_cause": "A template change\nallowed a wrong SAN.\n\nIt was deployed on 24 Nov.",
        "remediation": "Rolled back the template.",
        # other_info left empty and requested_info "-": both absent
    }
    assert form.category == "mis-issuance" and form.category_note is None
    assert form.fields["incident_at"].at == datetime(2026, 11, 25, 14, 5, tzinfo=UTC)
    assert form.fields["incident_at"].note is None
    assert form.fields["discovered_at"].at == datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    assert form.fields["discovered_at"].note == "no time zone given; read as UTC"
    assert form.source == "the message body"
    assert form.problems == ()
    assert form.missing(RULESET_2019_03) == []
    assert form.missing(RULESET_2026_02) == ["affected_certificate_count", "ca_requests"]


def test_every_template_label_is_read() -> None:
    text = "\n".join(f"{f.label}: answer {i}" for i, f in enumerate(FORM_FIELDS))
    form = parse_form_text(text, RULESET_2026_02, UTC_TZ)
    for i, spec in enumerate(FORM_FIELDS):
        assert form.fields[spec.key].value == f"answer {i}", spec.key
    assert form.missing(RULESET_2026_02) == []
    assert form.category == "other"
    assert form.category_note == "incident type 'answer 1' not recognised; recorded as other"


def test_2026_fields_read_and_required() -> None:
    text = TEMPLATE_FORM.replace(
        "Best regards,",
        "Number of end-entity certificates affected: 1,204\n"
        "Information or actions the CA asks the program to take: Distrust Issuing CA 3\n\n"
        "Best regards,",
    )
    form = parse_form_text(text, RULESET_2026_02, UTC_TZ)
    assert form.fields["affected_certificate_count"].value == "1,204"
    assert form.fields["ca_requests"].value == "Distrust Issuing CA 3"
    assert form.missing(RULESET_2026_02) == []


def test_find_form_in_rfc_mail_plain_body() -> None:
    message = parse_message(mail(TEMPLATE_FORM))
    form = find_form(message, RULESET_2019_03, ZoneInfo("Europe/Berlin"))
    assert form is not None
    assert form.source == "the message body"
    assert form.fields["ca_name"].value == "Example Trust"
    assert form.fields["remediation"].value == "Rolled back the template."
    # Berlin is UTC+1 in November: 16:00 local is 15:00 UTC.
    assert form.fields["discovered_at"].at == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert form.fields["discovered_at"].note == "no time zone given; read as Europe/Berlin"
    assert not looks_like_form_request(message)


def test_mail_without_form_is_a_form_request() -> None:
    message = parse_message(mail("Hello, could you send us the notification form? Thanks",
                                 subject="Request for the form"))
    assert find_form(message, RULESET_2019_03, UTC_TZ) is None
    assert looks_like_form_request(message)


def test_one_label_in_a_sentence_is_not_a_form() -> None:
    message = parse_message(mail("Root cause: we are still looking.\nRegards"))
    assert find_form(message, RULESET_2019_03, UTC_TZ) is None


# --- the shapes CAs write the form in -------------------------------------------------


def test_markdown_bold_numbering_bullets_and_seed_wording() -> None:
    text = """**CA name:** Example Trust
**Incident type:** Private key compromise
1. Who detected the incident? An external researcher
2. If available, who perpetrated the incident: unknown
a) When the CA discovered the incident
   25 Nov 2026 14:05 CET
- Where the incident occurred: Frankfurt
* Which Roots and, if requested by Microsoft, end-user certificates, were affected by the \
incident: Root R1
• Which, if any, sub-CAs were affected: none
"""
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    assert values(form) == {
        "ca_name": "Example Trust",
        "category": "Private key compromise",
        "detected_by": "An external researcher",
        "perpetrator": "unknown",
        "discovered_at": "25 Nov 2026 14:05 CET",  # label alone, answer on the next line
        "location": "Frankfurt",
        "affected_roots": "Root R1",
        "affected_subcas": "none",  # "none" is an answer: no sub-CA was affected
    }
    assert form.category == "key-compromise"
    assert form.fields["discovered_at"].at == datetime(2026, 11, 25, 13, 5, tzinfo=UTC)
    assert form.missing(RULESET_2019_03) == ["root_cause", "remediation"]


def test_markdown_table_with_paraphrased_labels() -> None:
    text = """| Field | Value |
|---|---|
| CA name | Example Trust |
| Incident type | Mis-issued certificate |
| Detected by | CT monitor |
| Discovered at | 2026-11-25T14:05+01:00 |
| Affected roots | Root R1 |
| Affected sub-CAs | Issuing CA 3 |
| Root cause | Template bug |
| Remediation | Template fixed, certificates revoked |
"""
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    assert values(form) == {
        "ca_name": "Example Trust",
        "category": "Mis-issued certificate",
        "detected_by": "CT monitor",
        "discovered_at": "2026-11-25T14:05+01:00",
        "affected_roots": "Root R1",
        "affected_subcas": "Issuing CA 3",
        "root_cause": "Template bug",
        "remediation": "Template fixed, certificates revoked",
    }
    assert form.category == "mis-issuance"
    assert form.fields["discovered_at"].at == datetime(2026, 11, 25, 13, 5, tzinfo=UTC)


def test_capitals_labels_on_own_lines_and_quoted_blank_form_ignored() -> None:
    text = """Thanks, here is the updated form.

CA NAME
Example Trust

DATE OF DISCOVERY
11/25/2026 14:05 (UTC+1)

UNDERLYING CAUSE
Line one
Line two

On Wed, 25 Nov 2026 at 10:00, Root Program <rootnotify@program.test> wrote:
> CA name:
> Who detected the incident: not this
Remediation: not this either, it is below the reply line
"""
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    assert values(form) == {
        "ca_name": "Example Trust",
        "discovered_at": "11/25/2026 14:05 (UTC+1)",
        "root_cause": "Line one\nLine two",
    }
    assert form.fields["discovered_at"].at == datetime(2026, 11, 25, 13, 5, tzinfo=UTC)
    assert form.category == "other"
    assert form.category_note == "no incident type given; recorded as other"


def test_gmail_inline_forward_whose_body_is_the_form() -> None:
    text = """Please see below.

---------- Forwarded message ---------
From: Ops <ops@example-trust.test>
Date: Wed, 25 Nov 2026 at 15:00
Subject: incident
To: Jane <jane@example-trust.test>

CA name: Example Trust
Who detected the incident: Night shift operator
Incident type: HVAC failure in the data centre
"""
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    assert form.source == "the forwarded message"
    assert values(form) == {
        "ca_name": "Example Trust",
        "detected_by": "Night shift operator",
        "category": "HVAC failure in the data centre",
    }
    assert form.category == "physical"


def test_outlook_reply_quoting_the_blank_form_is_not_a_form() -> None:
    text = """We will send the details shortly.

From: Root Program <rootnotify@program.test>
Sent: Wednesday, November 25, 2026 10:00 AM
To: Jane
Subject: RE: form

CA name:
Who detected the incident:
Where the incident occurred:
"""
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    assert form.fields == {}


def test_outlook_forward_with_filled_form_is_read() -> None:
    text = """FYI

-----Original Message-----
From: Ops <ops@example-trust.test>
Sent: Wednesday, November 25, 2026 3:00 PM
Subject: incident

CA name: Example Trust
Where the incident occurred: Frankfurt
"""
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    assert values(form) == {"ca_name": "Example Trust", "location": "Frankfurt"}
    assert form.source == "the forwarded message"


def test_2026_seed_combined_question_answers_three_fields() -> None:
    label = ("Which Roots, sub-CAs and the number of end-user certificates that were "
             "affected by the incident")
    text = f"CA name: Example Trust\n{label}: Root R1; Issuing CA 3; 12 certificates\n"
    form = parse_form_text(text, RULESET_2026_02, UTC_TZ)
    for key in ("affected_roots", "affected_subcas", "affected_certificate_count"):
        assert form.fields[key].value == "Root R1; Issuing CA 3; 12 certificates"
        assert form.fields[key].note == f"answered together under '{label}'"


def test_hint_text_and_placeholders_are_not_answers() -> None:
    text = """CA name: Example Trust
Incident type: (one of key-compromise, mis-issuance, public-report, physical, other)
Who perpetrated the incident (if known): ____
Where the incident occurred: [ ]
Who detected the incident: N/A
"""
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    # "N/A" is what the CA wrote and is kept for staff to judge.
    assert values(form) == {"ca_name": "Example Trust", "detected_by": "N/A"}
    assert form.category == "other"


def test_signature_ends_the_last_answer() -> None:
    text = "CA name: Example Trust\nRemedial measures taken or planned: Revoked.\n\n--\nJane\n"
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    assert form.fields["remediation"].value == "Revoked."


def test_label_answered_twice_reads_the_first_and_says_so() -> None:
    text = "CA name: Example Trust\nLocation: Frankfurt\nCA name: Other CA\n"
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    assert form.fields["ca_name"].value == "Example Trust"
    assert form.problems == ("'CA name' was answered twice; the first answer was read",)


def test_unreadable_and_zone_less_dates_are_explained() -> None:
    text = """CA name: Example Trust
When did the incident occur: last Tuesday, around lunch
When the CA discovered the incident: 05/06/2026 10:00
"""
    form = parse_form_text(text, RULESET_2019_03, ZoneInfo("America/New_York"))
    incident = form.fields["incident_at"]
    assert incident.value == "last Tuesday, around lunch" and incident.at is None
    assert incident.note == "could not read this date (no date found)"
    discovered = form.fields["discovered_at"]
    assert discovered.at is None  # 5 June or May 6: never guessed
    assert "either way" in (discovered.note or "")
    assert len(form.problems) == 2
    assert "When did the incident occur" in form.problems[0]


def test_category_values() -> None:
    cases = {
        "key-compromise": ("key-compromise", None),
        "Private key compromise": ("key-compromise", None),
        "key compromise": ("key-compromise", None),
        "Mis-issued certificate": ("mis-issuance", None),
        "misissuance": ("mis-issuance", None),
        "publicly reported compromise": ("public-report", None),
        "Physical compromise": ("physical", None),
        "HVAC failure": ("physical", None),
        "Other": ("other", None),
        "foo": ("other", "incident type 'foo' not recognised; recorded as other"),
        "mis-issuance and key compromise": (
            "mis-issuance",
            "several incident types in 'mis-issuance and key compromise'; "
            "recorded as mis-issuance",
        ),
    }
    for answer, (category, note) in cases.items():
        form = parse_form_text(f"CA name: X\nIncident type: {answer}\n", RULESET_2019_03, UTC_TZ)
        assert (form.category, form.category_note) == (category, note), answer


# --- where the form is in a mail -------------------------------------------------------

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def expect_answers(form, source: str) -> None:
    assert form is not None
    assert form.source == source
    assert values(form) == ANSWERS
    assert form.category == "key-compromise"
    # CET is UTC+1: 14:05 CET is 13:05 UTC, 16:30 CET is 15:30 UTC.
    assert form.fields["incident_at"].at == datetime(2026, 11, 25, 13, 5, tzinfo=UTC)
    assert form.fields["discovered_at"].at == datetime(2026, 11, 25, 15, 30, tzinfo=UTC)
    assert form.missing(RULESET_2019_03) == []


def test_html_only_mail_with_form_in_a_table() -> None:
    message = parse_message(make_mail(html=make_html()))
    assert message.text_plain.strip() == "" or "CA name" not in message.text_plain
    expect_answers(find_form(message, RULESET_2019_03, UTC_TZ), "the message body")


def test_docx_attachment_paragraphs_and_table_wins_over_body() -> None:
    raw = make_mail(
        "CA name: From the body\nLocation: body\n",
        attachments=(("incident-form.docx", DOCX,
                      make_docx(table_keys=("root_cause", "remediation"))),),
    )
    expect_answers(find_form(parse_message(raw), RULESET_2019_03, UTC_TZ),
                   "the attachment 'incident-form.docx'")


def test_pdf_acroform_fields_named_by_key() -> None:
    raw = make_mail("See attached.", attachments=(
        ("notification.pdf", "application/pdf", make_pdf_acroform(ANSWERS)),))
    expect_answers(find_form(parse_message(raw), RULESET_2019_03, UTC_TZ),
                   "the attachment 'notification.pdf'")


def test_pdf_acroform_fields_known_by_tooltip() -> None:
    names = {key: f"Text{i}" for i, key in enumerate(ANSWERS)}
    raw = make_mail("See attached.", attachments=(
        ("scan.pdf", "application/pdf", make_pdf_acroform(ANSWERS, names=names, tooltips=True)),))
    expect_answers(find_form(parse_message(raw), RULESET_2019_03, UTC_TZ),
                   "the attachment 'scan.pdf'")


def test_pdf_without_fields_is_read_from_its_text() -> None:
    raw = make_mail("See attached.", attachments=(
        ("form.pdf", "application/pdf", make_pdf_text(form_text().splitlines())),))
    expect_answers(find_form(parse_message(raw), RULESET_2019_03, UTC_TZ),
                   "the attachment 'form.pdf'")


def test_text_and_markdown_attachments() -> None:
    for name, mime in (("form.txt", "text/plain"), ("notification.md", "text/markdown")):
        raw = make_mail("See attached.", attachments=((name, mime, form_text().encode()),))
        expect_answers(find_form(parse_message(raw), RULESET_2019_03, UTC_TZ),
                       f"the attachment '{name}'")


def test_forwarded_mail_attachment() -> None:
    raw = make_mail("Forwarding our ops team's notification.",
                    forwarded=make_mail(form_text(), subject="Incident at Example Trust"))
    expect_answers(find_form(parse_message(raw), RULESET_2019_03, UTC_TZ),
                   "the forwarded message 'Incident at Example Trust'")


def test_unreadable_form_attachment_is_reported_not_ignored() -> None:
    raw = make_mail("See attached.", attachments=(
        ("form.pdf", "application/pdf", make_encrypted_pdf()),))
    form = find_form(parse_message(raw), RULESET_2019_03, UTC_TZ)
    assert form is not None and form.fields == {}
    assert form.problems == ("the attachment 'form.pdf': the PDF is encrypted with a password",)
    assert not looks_like_form_request(parse_message(raw))


def test_corrupt_form_attachment_falls_back_to_the_body_and_says_so() -> None:
    raw = make_mail(form_text(), attachments=(("form.docx", DOCX, b"PK\x03\x04garbage"),))
    form = find_form(parse_message(raw), RULESET_2019_03, UTC_TZ)
    assert form is not None and form.source == "the message body"
    assert values(form) == ANSWERS
    assert form.problems == ("the attachment 'form.docx': the .docx is corrupt "
                             "(File is not a zip file)",)


def test_oversized_attachment_is_not_opened() -> None:
    huge = b"%PDF-1.4\n" + b"0" * (40 * 1024 * 1024)
    raw = make_mail("See attached.", attachments=(("form.pdf", "application/pdf", huge),))
    form = find_form(parse_message(raw), RULESET_2019_03, UTC_TZ)
    assert form is not None and form.fields == {}
    assert "too large to be a form" in form.problems[0]


# --- never raises ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_parse_form_text_never_raises(text: str) -> None:
    form = parse_form_text(text, RULESET_2026_02, UTC_TZ)
    assert form.category in CATEGORIES


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([f.label for f in FORM_FIELDS] + [
    ":", "?", "\n", "| ", " |", "> ", "**", "1. ", "- ", "2026-11-25 14:05", "UTC", "(", ")",
    "On Mon wrote:", "-----Original Message-----", "From: a\nSent: b", "x" * 30,
]), max_size=60))
def test_parse_form_text_never_raises_on_form_like_noise(pieces: list[str]) -> None:
    form = parse_form_text("".join(pieces), RULESET_2019_03, UTC_TZ)
    assert all(f.value for f in form.fields.values())


def test_pdf_fields_with_camel_case_and_underscore_names() -> None:
    names = {"ca_name": "form1.CAName", "detected_by": "DetectedBy", "location": "Where_occurred",
             "root_cause": "Root_Cause"}
    answers = {k: ANSWERS[k] for k in names}
    raw = make_mail("See attached.", attachments=(
        ("form.pdf", "application/pdf", make_pdf_acroform(answers, names=names)),))
    form = find_form(parse_message(raw), RULESET_2019_03, UTC_TZ)
    assert form is not None
    # "CAName" has no lower-to-upper break and "Where_occurred" is no label: not read.
    assert values(form) == {"detected_by": ANSWERS["detected_by"],
                            "root_cause": ANSWERS["root_cause"]}


def test_quoted_lines_in_the_top_part_are_skipped() -> None:
    text = ("> CA name: their quote\nCA name: Example Trust\n"
            "> Location: quoted\nLocation: Frankfurt\n")
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    assert values(form) == {"ca_name": "Example Trust", "location": "Frankfurt"}


def test_gmail_html_reply_reads_only_the_new_part() -> None:
    html = (
        "<div>CA name: Example Trust<br>Where the incident occurred: Frankfurt</div>"
        '<div class="gmail_quote"><div>On Wed, 25 Nov 2026 at 10:00, Root Program '
        "&lt;rootnotify@program.test&gt; wrote:</div><blockquote>"
        "Who detected the incident: quoted text</blockquote></div>"
    )
    form = find_form(parse_message(make_mail(html=html)), RULESET_2019_03, UTC_TZ)
    assert form is not None
    assert values(form) == {"ca_name": "Example Trust", "location": "Frankfurt"}


def test_answer_typed_beside_the_hint() -> None:
    text = ("CA name: X\nIncident type: mis-issuance (one of key-compromise, mis-issuance, "
            "public-report, physical, other)\n")
    form = parse_form_text(text, RULESET_2019_03, UTC_TZ)
    assert form.fields["category"].value == "mis-issuance"
    assert (form.category, form.category_note) == ("mis-issuance", None)
