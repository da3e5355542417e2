"""The final report (R4): checked item by item, in the body or attached, completed by a later one.

Staff set the due date (P4); the CA sends a report missing items and gets the
checklist; the deadline stays open; a later report supplies the rest and
satisfies it. `/accept final-report` lets staff close it with items missing.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from email.message import EmailMessage

from bot.rules.rulesets import RULESET_2019_03, RULESET_2026_02, ReportItem
from tests.form_factory import make_pdf_text
from tests.harness import BOT, CA_CONTACT
from tests.story import command, deadline, notify, send, show, story_bot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def report_lines(items: tuple[ReportItem, ...], skip: tuple[str, ...] = ()) -> list[str]:
    out = []
    for n, item in enumerate(items, 1):
        if item.key not in skip:
            out += [f"{n}. {item.title}", f"Our answer on {item.title.lower()}.", ""]
    return out


def report_mail(inc: str, subject: str, body: str,
                attachment: tuple[str, str, bytes] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = CA_CONTACT, BOT, f"Re: [{inc}] {subject}"
    msg["Message-ID"] = f"<{abs(hash((inc, subject, body)))}@exampleca.test>"
    msg.set_content(body)
    if attachment:
        name, ctype, data = attachment
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def test_a_report_missing_items_leaves_the_deadline_open_until_a_later_one_completes_it(
        tmp_path):
    items = RULESET_2019_03.final_report_items
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, "/request final-report due 2026-12-20", inc)
        body = "\n".join(report_lines(items, skip=("log_files", "recent_audit_remediated")))
        send(bot, report_mail(inc, "Final report", body))
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Final report received"))[0]
        assert "(2 item(s) missing)" in receipt.subject
        assert "[x] 1. Certificates and domains involved — present" in receipt.body
        assert "[ ] 9. Log files — MISSING" in receipt.body
        assert "[ ] 13. Remediated after the most recent audit — MISSING" in receipt.body
        data = show(bot, inc)
        assert data["final_report"]["missing"] == ["log_files", "recent_audit_remediated"]
        assert deadline(data, "final-report", "open")

        # The rest arrives as a Markdown attachment named "final-…": the report is complete.
        rest = "\n".join(["9. Log files", "See appendix A.", "",
                          "13. Remediated after the most recent audit", "Yes, in 2026-10.", "",
                          "14. Changes to the CP/CPS", "None."])
        send(bot, report_mail(inc, "the missing items", "Attached.",
                              ("final-report-addendum.md", "text/markdown", rest.encode())))
        done = sink.wait_for(sink.to(CA_CONTACT, "(complete)"))[0]
        assert "(from an earlier report)" in done.body and "MISSING" not in done.body
        assert "This satisfies: the final incident report" in done.body
        data = show(bot, inc)
        assert data["final_report"]["received"] is True and data["final_report"]["missing"] == []
        assert deadline(data, "final-report", "satisfied")


def test_a_docx_report_and_staff_accepting_it_with_items_missing(tmp_path):
    import docx

    items = RULESET_2019_03.final_report_items
    document = docx.Document()
    for line in report_lines(items, skip=("perpetrator",)):
        if line:
            document.add_paragraph(line)
    buf = io.BytesIO()
    document.save(buf)
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, "/request final-report due 2026-12-20", inc)
        send(bot, report_mail(inc, "our report", "Please see the attached document.",
                              ("Incident-Report-Final.docx", "application/vnd.openxmlformats-"
                               "officedocument.wordprocessingml.document", buf.getvalue())))
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Final report received"))[0]
        assert "[ ] 8. Who perpetrated the breach — MISSING" in receipt.body
        assert show(bot, inc)["final_report"]["missing"] == ["perpetrator"]
        done = command(bot, sink, "/accept final-report", inc)
        assert "accepted; 1 deadline(s) closed" in done.body
        assert deadline(show(bot, inc), "final-report", "satisfied")


def test_2026_02_a_pdf_report_has_14_items_and_no_log_files(tmp_path):
    items = RULESET_2026_02.final_report_items
    pdf = make_pdf_text([line for line in report_lines(items) if line])
    with story_bot(tmp_path, NOW, ruleset="2026-02") as (bot, sink, _pki):
        inc = notify(bot, sink)
        send(bot, report_mail(inc, "Final report", "Attached as PDF.",
                              ("final.pdf", "application/pdf", pdf)))
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Final report received"))[0]
        assert "Log files" not in receipt.body
        assert "(complete)" in receipt.subject
        # Numbered 1-14 as the 2026-02 text numbers them (issue 16).
        assert "[x] 13. Changes to the CP/CPS — present" in receipt.body
        assert "[x] 14. How the issue was closed — present" in receipt.body
        data = show(bot, inc)
        assert "log_files" not in data["final_report"]["present"] + data["final_report"]["missing"]
        assert len(data["final_report"]["present"]) == 14 and data["final_report"]["missing"] == []
