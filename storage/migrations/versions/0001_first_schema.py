"""The first schema: every table as rootnotify made it before migrations.

A database made by rootnotify before it had migrations (`meta` holds
schema_version 1) is exactly this revision; `storage.migrate` stamps it so
and upgrades it from here. Types are spelled out (String, DateTime), not
taken from storage.models, so that this file stays what it was.

Revision ID: 0001
Revises: nothing (the first)
Create Date: 2026-11-28 04:21:27.095790
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auto_reply_count",
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("address", "day"),
    )
    op.create_table(
        "imap_state",
        sa.Column("folder", sa.String(), nullable=False),
        sa.Column("uidvalidity", sa.Integer(), nullable=True),
        sa.Column("last_uid", sa.Integer(), nullable=False),
        sa.Column("last_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("folder"),
    )
    op.create_table(
        "incident",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ca", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("ruleset", sa.String(), nullable=False),
        sa.Column("incident_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("discovered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notification_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notified_on_time", sa.Boolean(), nullable=True),
        sa.Column("late_by_seconds", sa.Integer(), nullable=True),
        sa.Column("exceptional", sa.Boolean(), nullable=False),
        sa.Column("reports_mode", sa.String(), nullable=True),
        sa.Column("report_interval_seconds", sa.Integer(), nullable=True),
        sa.Column("form_source", sa.String(), nullable=True),
        sa.Column("thread_message_id", sa.String(), nullable=True),
        sa.Column("public_disclosure", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("year", "seq"),
    )
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_ca"), ["ca"], unique=False)
        batch_op.create_index("ix_incident_r3", ["reports_mode", "notified_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_incident_status"), ["status"], unique=False)

    op.create_table(
        "meta",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "domain",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "name"),
    )
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_domain_incident_id"), ["incident_id"], unique=False)

    op.create_table(
        "inbound_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedup_key", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope_from", sa.String(), nullable=True),
        sa.Column("envelope_to", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("from_address", sa.String(), nullable=True),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("date_header", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kind", sa.String(), nullable=True),
        sa.Column("sender_role", sa.String(), nullable=True),
        sa.Column("ca", sa.String(), nullable=True),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("smime", sa.String(), nullable=True),
        sa.Column("smime_reason", sa.String(), nullable=True),
        sa.Column("quarantined", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key"),
    )
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbound_message_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_inbound_message_message_id"), ["message_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_inbound_message_quarantined"), ["quarantined"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_inbound_message_received_at"), ["received_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_inbound_message_state"), ["state"], unique=False)

    op.create_table(
        "certificate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=True),
        sa.Column("serial", sa.String(), nullable=True),
        sa.Column("issuer", sa.String(), nullable=True),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("dns_names", sa.String(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("precertificate", sa.Boolean(), nullable=False),
        sa.Column("crtsh_id", sa.Integer(), nullable=True),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_message.id"],
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "key"),
    )
    with op.batch_alter_table("certificate", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_certificate_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "certificate_list_load",
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("new_certificates", sa.Integer(), nullable=False),
        sa.Column("new_domains", sa.Integer(), nullable=False),
        sa.Column("limit", sa.String(), nullable=True),
        sa.Column("first_rejections", sa.String(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("longest_chunk", sa.Float(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_message.id"],
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("inbound_id", "position"),
    )
    op.create_table(
        "deadline",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=True),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(), nullable=True),
        sa.Column("satisfied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("satisfied_by", sa.Integer(), nullable=True),
        sa.Column("next_reminder_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.ForeignKeyConstraint(
            ["satisfied_by"],
            ["inbound_message.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deadline", schema=None) as batch_op:
        batch_op.create_index("ix_deadline_due", ["state", "next_reminder_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_deadline_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index("ix_deadline_state_due", ["state", "due_at"], unique=False)

    op.create_table(
        "final_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("present", sa.String(), nullable=False),
        sa.Column("missing", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_message.id"],
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("final_report", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_final_report_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "form_value",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("at_value", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_message.id"],
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("form_value", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_form_value_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "outbound_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("envelope_from", sa.String(), nullable=False),
        sa.Column("recipients", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_message.id"],
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("outbound_message", schema=None) as batch_op:
        batch_op.create_index("ix_outbound_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_outbound_message_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "proposal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_message.id"],
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("proposal", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_proposal_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_proposal_state"), ["state"], unique=False)

    op.create_table(
        "raw_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["id"],
            ["inbound_message.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=True),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.Column("outbound_id", sa.Integer(), nullable=True),
        sa.Column("command", sa.String(), nullable=True),
        sa.Column("data", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_message.id"],
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.ForeignKeyConstraint(
            ["outbound_id"],
            ["outbound_message.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_incident_id"), ["incident_id"], unique=False)

    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("target_sha256", sa.String(), nullable=True),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exceptional", sa.Boolean(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("recipients", sa.String(), nullable=False),
        sa.Column("outbound_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.ForeignKeyConstraint(
            ["outbound_id"],
            ["outbound_message.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_incident_id"), ["incident_id"], unique=False)

    op.create_table(
        "reminder_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deadline_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deadline_id"],
            ["deadline.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("deadline_id", "stage"),
    )


def downgrade() -> None:
    op.drop_table("reminder_log")
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_incident_id"))

    op.drop_table("notice")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_incident_id"))
        batch_op.drop_index(batch_op.f("ix_event_at"))

    op.drop_table("event")
    op.drop_table("raw_message")
    with op.batch_alter_table("proposal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_proposal_state"))
        batch_op.drop_index(batch_op.f("ix_proposal_incident_id"))

    op.drop_table("proposal")
    with op.batch_alter_table("outbound_message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbound_message_incident_id"))
        batch_op.drop_index("ix_outbound_due")

    op.drop_table("outbound_message")
    with op.batch_alter_table("form_value", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_form_value_incident_id"))

    op.drop_table("form_value")
    with op.batch_alter_table("final_report", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_final_report_incident_id"))

    op.drop_table("final_report")
    with op.batch_alter_table("deadline", schema=None) as batch_op:
        batch_op.drop_index("ix_deadline_state_due")
        batch_op.drop_index(batch_op.f("ix_deadline_incident_id"))
        batch_op.drop_index("ix_deadline_due")

    op.drop_table("deadline")
    op.drop_table("certificate_list_load")
    with op.batch_alter_table("certificate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificate_incident_id"))

    op.drop_table("certificate")
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_message_state"))
        batch_op.drop_index(batch_op.f("ix_inbound_message_received_at"))
        batch_op.drop_index(batch_op.f("ix_inbound_message_quarantined"))
        batch_op.drop_index(batch_op.f("ix_inbound_message_message_id"))
        batch_op.drop_index(batch_op.f("ix_inbound_message_incident_id"))

    op.drop_table("inbound_message")
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_domain_incident_id"))

    op.drop_table("domain")
    op.drop_table("meta")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_status"))
        batch_op.drop_index("ix_incident_r3")
        batch_op.drop_index(batch_op.f("ix_incident_ca"))

    op.drop_table("incident")
    op.drop_table("imap_state")
    op.drop_table("auto_reply_count")
