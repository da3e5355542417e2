"""The notification form as CAs send it: what a person reading each mail would extract."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from bot.parse.forms import find_form, looks_like_form_request, parse_form_text
from bot.parse.message import parse_message
from bot.rules.rulesets import FORM_FIELDS, RULESET_2019_03, RULESET_2026_02

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
