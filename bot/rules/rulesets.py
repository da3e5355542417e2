"""The two published revisions of the program's rules, as data.

Everything that differs between the March 2019 text and the February 2026
text lives in one `Ruleset` each; code asks the ruleset, never the name.
Rule ids (R1, R3, R4, P1 …) are those of `program-rules.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal

NOTIFICATION_WINDOW = timedelta(hours=24)  # R1: "no later than 24 hours"
REPORTS_REQUEST_WINDOW = timedelta(hours=24)  # R3: staff set an interval within 24 h

CATEGORIES: tuple[str, ...] = (
    "key-compromise",
    "mis-issuance",
    "public-report",
    "physical",
    "other",
)


@dataclass(frozen=True)
class FormField:
    key: str
    label: str  # exactly the label on the blank form (DESIGN.md)
    hint: str = ""  # what the blank form says after the label, if anything


@dataclass(frozen=True)
class ReportItem:
    number: int
    key: str
    title: str  # short heading used in receipts and checklists
    question: str  # the seed's wording of the item


# R1a: the form. Order is the order of the blank form.
FORM_FIELDS: tuple[FormField, ...] = (
    FormField("ca_name", "CA name"),
    FormField(
        "category",
        "Incident type",
        "(one of key-compromise, mis-issuance, public-report, physical, other)",
    ),
    FormField("incident_at", "When did the incident occur"),
    FormField("detected_by", "Who detected the incident"),
    FormField("perpetrator", "Who perpetrated the incident (if known)"),
    FormField("discovered_at", "When the CA discovered the incident"),
    FormField("location", "Where the incident occurred"),
    FormField(
        "affected_roots",
        "Which roots (and end-entity certificates, if requested) were affected",
    ),
    FormField("affected_subcas", "Which sub-CAs were affected"),
    FormField("root_cause", "What the CA believes the underlying cause is"),
    FormField("remediation", "Remedial measures taken or planned"),
    FormField("other_info", "Any other information the CA believes appropriate"),
    FormField("requested_info", "Other information requested by the program"),
    FormField(
        "affected_certificate_count",
        "Number of end-entity certificates affected",
    ),
    FormField(
        "ca_requests",
        "Information or actions the CA asks the program to take",
    ),
)
FORM_FIELDS_BY_KEY = {f.key: f for f in FORM_FIELDS}

_REQUIRED_2019 = (
    "ca_name",
    "detected_by",
    "discovered_at",
    "location",
    "affected_roots",
    "affected_subcas",
    "root_cause",
    "remediation",
)

# R4: the final report, in the seed's order.
FINAL_REPORT_ITEMS: tuple[ReportItem, ...] = (
    ReportItem(1, "certificates_and_domains", "Certificates and domains involved",
               "A list of certificates and domains involved in the breach."),
    ReportItem(2, "detection", "How the incident was detected",
               "How did the CA detect the incident? If the CA did not detect the breach, "
               "who did and why did the CA not detect?"),
    ReportItem(3, "report_mismatch", "Mismatch in reports over time",
               "If there was a mismatch in the reports over time, why?"),
    ReportItem(4, "exploit_description", "Description of the exploit",
               "Detailed description of the exploit."),
    ReportItem(5, "infrastructure_compromised", "Infrastructure compromised",
               "Details about what infrastructure was compromised."),
    ReportItem(6, "how_compromised", "How the infrastructure was compromised",
               "Details about how the infrastructure was compromised."),
    ReportItem(7, "timeline", "Timeline of events", "A detailed timeline of events."),
    ReportItem(8, "perpetrator", "Who perpetrated the breach",
               "The CA's interpretation of who perpetrated the breach."),
    ReportItem(9, "log_files", "Log files", "Log files (appendix only)."),
    ReportItem(10, "detected_by_normal_operation", "Detected by normal operation",
               "Was the vulnerability detected by the CAs normal operation? "
               "If it was not, please explain why."),
    ReportItem(11, "found_in_recent_audit", "Discovered in the most recent audit",
               "Was the vulnerability discovered in the most-recent audit? If yes, then "
               "provide information if the vulnerability was remediated. If the "
               "vulnerability was not remediated, please provide information about the "
               "reason for not doing so."),
    ReportItem(12, "detected_by_recent_audit", "Detected by the most recent audit",
               "Was this vulnerability detected by the most-recent audit? "
               "If it was not, please explain why."),
    ReportItem(13, "recent_audit_remediated", "Remediated after the most recent audit",
               "If the vulnerability was detected in the most recent audit, was it "
               "remediated? If not please explain why."),
    ReportItem(14, "cp_cps_changes", "Changes to the CP/CPS",
               "What changes to the CP/CPS policies will the CA make?"),
    ReportItem(15, "closure", "How the issue was closed",
               "Detailed description of how the issue was closed."),
)

ClockStart = Literal["incident_at", "discovered_at"]
ReportsDefault = Literal["as-discovered", "every-24h"]


@dataclass(frozen=True)
class Ruleset:
    name: str
    # R1: which form field starts the 24-hour clock, and the fallback when unknown.
    clock_starts: tuple[str, ...]
    form_fields: tuple[FormField, ...]
    required_fields: tuple[str, ...]
    # R3: what applies when staff set no interval within 24 hours.
    reports_default: ReportsDefault
    default_update_interval: timedelta | None
    # R4
    final_report_items: tuple[ReportItem, ...]
    final_report_when: str
    # P1 wording in notices.
    revoke_wording: str
    public_disclosure_required: bool
    # R2, R5, info: a request sent without `due DATE` is due this long after
    # the command's receipt; a kind not listed has no due date and no reminders
    # (neither text sets a period for them).
    undated_request_periods: tuple[tuple[str, timedelta], ...] = ()
    # R4 (2026-02 "once the incident has been resolved"): the final report is
    # due this long after /resolved, unless staff set a date; None: not opened.
    final_report_after_resolved: timedelta | None = None
    # Public disclosure on Bugzilla: the link is due this long after the
    # notification (when `public_disclosure_required`).
    public_disclosure_within: timedelta | None = None

    def undated_request_period(self, kind: str) -> timedelta | None:
        return dict(self.undated_request_periods).get(kind)

    def form_field_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.form_fields)

    def report_item_keys(self) -> tuple[str, ...]:
        return tuple(i.key for i in self.final_report_items)


RULESET_2019_03 = Ruleset(
    name="2019-03",
    clock_starts=("incident_at", "discovered_at"),
    form_fields=tuple(f for f in FORM_FIELDS if f.key not in
                      ("affected_certificate_count", "ca_requests")),
    required_fields=_REQUIRED_2019,
    reports_default="as-discovered",
    default_update_interval=None,
    final_report_items=FINAL_REPORT_ITEMS,
    final_report_when="when requested (P4) or at the end of the incident",
    revoke_wording="revoke",
    public_disclosure_required=False,
)

RULESET_2026_02 = Ruleset(
    name="2026-02",
    clock_starts=("discovered_at",),
    form_fields=FORM_FIELDS,
    required_fields=(*_REQUIRED_2019, "affected_certificate_count", "ca_requests"),
    reports_default="every-24h",
    default_update_interval=timedelta(hours=24),
    # Numbered 1-14 as the 2026-02 text numbers them (no gap where log files were).
    final_report_items=tuple(
        replace(item, number=n) for n, item in
        enumerate((i for i in FINAL_REPORT_ITEMS if i.key != "log_files"), 1)),
    final_report_when="once the incident has been resolved",
    revoke_wording="remove and/or disallow",
    public_disclosure_required=True,
    # The text says "once resolved" and names no period; two weeks is the
    # CCADB's customary time for a full incident report. `/request
    # final-report due DATE` replaces it.
    final_report_after_resolved=timedelta(days=14),
    # The CCADB asks for a preliminary incident report on Bugzilla within 72 hours.
    public_disclosure_within=timedelta(hours=72),
)

RULESETS: dict[str, Ruleset] = {r.name: r for r in (RULESET_2019_03, RULESET_2026_02)}
DEFAULT_RULESET = "2019-03"


def get_ruleset(name: str) -> Ruleset:
    try:
        return RULESETS[name]
    except KeyError:
        known = ", ".join(sorted(RULESETS))
        raise ValueError(f"unknown ruleset {name!r} (known: {known})") from None
