"""The notification form's label variants and incident-type words, as data.

A reviewer should be able to read this file in one screen and see every way a
CA may write a form label or an incident type that rootnotify understands.
Labels are compared after `normalize_label` (case, punctuation, hyphens,
parenthesised hints and numbering removed), so variants here are written
plainly; the template labels of `FORM_FIELDS` are always accepted as well.
"""

from __future__ import annotations

import functools
import re

from bot.rules.rulesets import FORM_FIELDS

# key → label variants besides the template label (seed wording, paraphrases).
LABEL_VARIANTS: dict[str, tuple[str, ...]] = {
    "ca_name": ("CA", "Name of the CA", "Certificate Authority", "Certification Authority",
                "CA organisation", "CA organization", "Organisation", "Organization",
                "Reporting CA", "CA operator"),
    "category": ("Incident category", "Type of incident", "Category", "Incident type(s)",
                 "Type", "Nature of the incident"),
    "incident_at": ("When the incident occurred", "Time of the incident", "Date of the incident",
                    "Incident date", "Incident time", "Occurred at", "Occurred on",
                    "Date and time of the incident", "When did it occur", "When did it happen"),
    "detected_by": ("Who detected the incident", "Detected by", "Who detected it",
                    "Who discovered the incident", "Who discovered it", "Discovered by",
                    "Reported by", "Detection"),
    "perpetrator": ("If available, who perpetrated the incident", "Who perpetrated the incident",
                    "Perpetrator", "Perpetrated by", "Attacker", "Who was responsible"),
    "discovered_at": ("When the CA discovered the incident", "Discovered at", "Discovered on",
                      "Date of discovery", "Time of discovery", "Discovery date",
                      "Discovery time", "Date and time of discovery", "When was it discovered",
                      "When did the CA discover the incident", "Detected at", "Detected on"),
    "location": ("Where the incident occurred", "Where did the incident occur", "Location",
                 "Where", "Place of the incident", "Location of the incident"),
    "affected_roots": ("Which Roots and, if requested by Microsoft, end-user certificates, "
                       "were affected by the incident",
                       "Which Roots and, if requested by the program, end-user certificates, "
                       "were affected by the incident",
                       "Which roots were affected", "Affected roots", "Affected root",
                       "Affected root certificates", "Roots affected", "Root certificates affected",
                       "Affected roots and certificates"),
    "affected_subcas": ("Which, if any, sub-CAs were affected", "Affected sub-CAs",
                        "Affected subordinate CAs", "Affected intermediates",
                        "Affected intermediate CAs", "Sub-CAs affected", "Subordinate CAs affected",
                        "Which subordinate CAs were affected", "Affected sub-CA"),
    "root_cause": ("What the CA believes to be the underlying cause of the incident",
                   "Root cause", "Underlying cause", "Cause", "Believed cause",
                   "Cause of the incident", "Believed underlying cause"),
    "remediation": ("What remedial measures the CA has taken or will take that the CA believes "
                    "will address the underlying cause of the incident",
                    "Remediation", "Remedial measures", "Remediation steps", "Mitigation",
                    "Remedial actions", "Measures taken", "Actions taken"),
    "other_info": ("Any other information the CA believes to be appropriate", "Other information",
                   "Additional information", "Any other information", "Other info", "Comments"),
    "requested_info": ("Any other information Microsoft requested when it responded to the "
                       "initial notification",
                       "Any other information the program requested when it responded to the "
                       "initial notification",
                       "Information requested by the program", "Requested information"),
    "affected_certificate_count": ("Number of affected certificates",
                                   "Number of end-user certificates affected",
                                   "Number of certificates affected", "Affected certificate count",
                                   "Affected certificates", "Certificate count"),
    "ca_requests": ("Any information or actions the CA requests Microsoft take to increase "
                    "security or alleviate pain for the end-users",
                    "Any information or actions the CA requests the program take to increase "
                    "security or alleviate pain for the end-users",
                    "Requests to the program", "CA requests", "Actions requested",
                    "Requested actions", "Requests to Microsoft"),
}

# The 2026-02 seed asks three things in one sentence; its answer fills all three keys.
COMBINED_LABELS: dict[str, tuple[str, ...]] = {
    "Which Roots, sub-CAs and the number of end-user certificates that were affected by the "
    "incident": ("affected_roots", "affected_subcas", "affected_certificate_count"),
}

# Incident type words, tried in this order; the first pattern found anywhere in
# the answer decides. public-report is tried before key-compromise because the
# seed's "publicly reported compromise" names a compromise too.
CATEGORY_PATTERNS: tuple[tuple[str, str], ...] = (
    ("public-report", r"public(ly)?[\s-]*(reported|report|disclos)"),
    ("key-compromise", r"key[\s-]*compromi|compromised?\s+(private\s+)?key|key\s+(leak|exposure)"),
    ("mis-issuance", r"mis[\s-]*issu|wrongly\s+issued|improperly\s+issued"),
    ("physical", r"physical|hvac|building|access[\s-]*control|data[\s-]*cent(er|re)|facility"
                 r"|break[\s-]*in"),
    ("other", r"\bother\b"),
)

_PAREN = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_DROP = re.compile(r"['’`*]|-")
_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


# Every line of a mail is tried as a label, and the same label texts come
# back in every form: ~100 calls a mail, ~6 µs each uncached.
@functools.lru_cache(maxsize=4096)
def normalize_label(text: str) -> str:
    """Lower case, hints in parentheses dropped, hyphens and punctuation removed."""
    text = _PAREN.sub(" ", text.replace("&", " and "))
    text = _PUNCT.sub(" ", _DROP.sub("", text.lower())).replace("_", " ")
    text = _SPACE.sub(" ", text).strip()
    return text.removeprefix("the ")


def _build() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for spec in FORM_FIELDS:
        for variant in (spec.label, *LABEL_VARIANTS.get(spec.key, ())):
            table.setdefault(normalize_label(variant), (spec.key,))
    for variant, keys in COMBINED_LABELS.items():
        table[normalize_label(variant)] = keys
    return table


# normalised label → the form keys it answers.
LABELS: dict[str, tuple[str, ...]] = _build()
LONGEST_LABEL = max(len(k) for k in LABELS)
