"""The final report's items as data: each heading's variants, and placeholders that say nothing."""

from __future__ import annotations

# Rewordings seen in practice, besides each item's title and question.
HEADING_VARIANTS: dict[str, tuple[str, ...]] = {
    "certificates_and_domains": (
        "certificates and domains", "list of certificates and domains",
        "affected certificates and domains", "affected certificates", "certificates involved",
        "domains involved", "certificate list", "affected domains",
    ),
    "detection": (
        "detection", "incident detection", "how was the incident detected",
        "how the incident was detected", "how the ca detected the incident", "how detected",
    ),
    "report_mismatch": (
        "mismatch", "report mismatch", "reports mismatch", "mismatch in reports",
        "mismatch in the reports", "discrepancies", "discrepancies between reports",
        "inconsistencies between reports", "changes between reports",
    ),
    "exploit_description": (
        "exploit", "the exploit", "exploit description", "root cause", "root cause / exploit",
        "root cause and exploit", "exploit / root cause",
    ),
    "infrastructure_compromised": (
        "infrastructure", "compromised infrastructure", "affected infrastructure",
        "what infrastructure was compromised", "affected systems", "systems compromised",
    ),
    "how_compromised": (
        "how compromised", "how it was compromised", "how the infrastructure was compromised",
        "attack vector", "method of compromise", "compromise method",
    ),
    "timeline": (
        "timeline", "chronology", "detailed timeline", "incident timeline", "sequence of events",
        "timeline of events",
    ),
    "perpetrator": (
        "perpetrator", "perpetrators", "attribution", "threat actor", "who perpetrated the breach",
    ),
    "log_files": (
        "logs", "log files", "logs (appendix)", "log files (appendix)", "appendix: logs",
        "appendix: log files", "appendix - log files", "log appendix", "logs appendix",
    ),
    "detected_by_normal_operation": (
        "normal operation", "normal operations", "detection by normal operation",
        "detected by normal operations", "detected by normal operation",
    ),
    "found_in_recent_audit": (
        "found in recent audit", "discovered in recent audit", "found in the most recent audit",
        "discovered in the most recent audit", "most recent audit findings",
    ),
    "detected_by_recent_audit": (
        "detected by recent audit", "detected by the most recent audit", "audit detection",
    ),
    "recent_audit_remediated": (
        "audit remediation", "remediated after audit", "remediation after the most recent audit",
        "remediation of audit findings",
    ),
    "cp_cps_changes": (
        "cp/cps", "cp/cps changes", "changes to cp/cps", "cps changes", "cp and cps changes",
        "policy changes", "changes to the cp/cps policies",
    ),
    "closure": (
        "closure", "issue closure", "incident closure", "how the issue was closed",
        "how the incident was closed",
    ),
}


# Bare answers that say nothing (compared lower-cased, trailing "." dropped).
PLACEHOLDERS = frozenset({
    "n/a", "na", "n.a", "tbd", "tbc", "todo", "-", "--", "–", "—", "...", "…", "?", "xxx",
})
