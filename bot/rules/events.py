"""The kinds of timeline event an incident records, as data; the stored strings are these values.

A kind is written to `Event.kind` as its value, so the strings in existing
databases, exports and the operator's views stay what they were. Kinds that
carry a part of their own (`mail-sent:<mail kind>`, `reminder:<stage>`,
`deadline-<state>`, `smime-<status>`, `<inbound kind>-received`,
`reports-<mode>`) are built from these prefixes by the code that knows the part.
"""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    # the incident's life (R1 … R4, P1, M2)
    INCIDENT_OPENED = "incident-opened"
    NOTIFICATION_ON_TIME = "notification-on-time"
    NOTIFICATION_LATE = "notification-late"
    NOTIFICATION_UNJUDGED = "notification-unjudged"
    R1_RECOMPUTED = "r1-recomputed"
    FORM_RECORDED = "form-recorded"
    FIELD_RECORDED = "field-recorded"
    FIELD_CHANGED = "field-changed"
    UPDATE_RECEIVED = "update-received"
    CERTIFICATE_LIST = "certificate-list"
    FINAL_REPORT_RECEIVED = "final-report-received"
    RESOLUTION_PROPOSED = "resolution-proposed"
    INCIDENT_RESOLVED = "incident-resolved"
    INCIDENT_MERGED_AWAY = "incident-merged-away"
    PUBLIC_DISCLOSURE = "public-disclosure"
    PROPOSAL_RECEIVED = "proposal-received"
    PROPOSAL_ANSWERED = "proposal-answered"
    DUPLICATE_NOTIFICATION = "duplicate-notification"
    LIMITS_EXCEEDED = "limits-exceeded"
    # deadlines and notices
    DEADLINE_OPENED = "deadline-opened"
    NOTICE_GIVEN = "notice-given"
    ESCALATED = "escalated"
    # staff commands
    COMMANDS_REFUSED = "commands-refused"
    COMMAND_UNAUTHENTICATED = "command-unauthenticated"
    COMMAND_SIGNATURE_REFUSED = "command-signature-refused"
    # what staff commands do (bot/decide/staff/actions.py)
    EXCEPTIONAL_ON = "exceptional-on"
    EXCEPTIONAL_OFF = "exceptional-off"
    INVESTIGATOR_REQUIRED = "third-party-investigator-required"
    AUDIT_DISQUALIFIED = "audit-disqualified"
    FINAL_REPORT_ACCEPTED = "final-report-accepted"
    NOTE = "note"
    INCIDENT_CLOSED = "incident-closed"
    CLOSED_WITHOUT_FINAL_REPORT = "closed-without-final-report"
    INCIDENT_REOPENED = "incident-reopened"
    INCIDENT_MERGED = "incident-merged"
    # what an operator does to a stored message (bot/operator/messageops.py)
    MESSAGE_DROPPED = "message-dropped"
    MESSAGE_RELEASED = "message-released"
    # outgoing mail
    REPLY_SUPPRESSED = "reply-suppressed"
    MAIL_FAILED = "mail-failed"
