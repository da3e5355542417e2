"""The final report (R4): which items a CA's report answers, by number or by heading text."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.parse.forms.reports import (
    MAX_SECTION_CHARS,
    ReportCheck,
    check_final_report,
    looks_like_final_report,
)
from bot.rules.rulesets import FINAL_REPORT_ITEMS, RULESET_2019_03, RULESET_2026_02, ReportItem

R19 = RULESET_2019_03
R26 = RULESET_2026_02
Heading = Callable[[int, ReportItem], str]


def answer(item: ReportItem) -> str:
    return f"Our answer about {item.title.lower()}: details follow for {item.key}."


def report(heading: Heading, items: Iterable[ReportItem], skip: Iterable[str] = ()) -> str:
    """A report with one heading per item, numbered in the order given, without `skip`."""
    out = ["Dear Root Program,", "", "please find our final report below.", ""]
    for n, item in enumerate(items, 1):
        if item.key in skip:
            continue
        out += [heading(n, item), answer(item), ""]
    out += ["Kind regards,", "Example CA"]
    return "\n".join(out)


ALL_19 = R19.report_item_keys()
ALL_26 = R26.report_item_keys()
WITHOUT_9_AND_13 = ("log_files", "recent_audit_remediated")

NUMBERED_STYLES: dict[str, Heading] = {
    "n. question": lambda n, it: f"{n}. {it.question}",
    "n) title": lambda n, it: f"{n}) {it.title}",
    "Item n": lambda n, it: f"Item {n}",
    "Item n: title": lambda n, it: f"Item {n}: {it.title}",
    "## n. title": lambda n, it: f"## {n}. {it.title}",
    "**n.** bold": lambda n, it: f"**{n}.**",
    "**n. question**": lambda n, it: f"**{n}. {it.question}**",
    "bare n.": lambda n, it: f"{n}.",
    "Qn.": lambda n, it: f"Q{n}.",
}
TEXT_STYLES: dict[str, Heading] = {
    "question": lambda n, it: it.question,
    "question:": lambda n, it: f"{it.question}:",
    "title:": lambda n, it: f"{it.title}:",
    "## title": lambda n, it: f"## {it.title}",
    "**title**": lambda n, it: f"**{it.title}**",
    "- title:": lambda n, it: f"- {it.title}:",
    "TITLE": lambda n, it: it.title.upper(),
}


# ---------------------------------------------------------------- the seed's 15 questions


@pytest.mark.parametrize("style", NUMBERED_STYLES)
def test_a_complete_numbered_report_has_every_item(style: str) -> None:
    check = check_final_report(report(NUMBERED_STYLES[style], FINAL_REPORT_ITEMS), R19)
    assert check.present == ALL_19
    assert check.missing == ()
    assert check.numbered
    assert check.sections["timeline"] == answer(FINAL_REPORT_ITEMS[6])


@pytest.mark.parametrize("style", TEXT_STYLES)
def test_a_complete_report_headed_by_text_has_every_item(style: str) -> None:
    check = check_final_report(report(TEXT_STYLES[style], FINAL_REPORT_ITEMS), R19)
    assert check.present == ALL_19
    assert not check.numbered
    assert check.sections["closure"].startswith(answer(FINAL_REPORT_ITEMS[14]))


@pytest.mark.parametrize("style", [*NUMBERED_STYLES, *TEXT_STYLES])
def test_a_report_missing_items_9_and_13_says_so(style: str) -> None:
    heading = {**NUMBERED_STYLES, **TEXT_STYLES}[style]
    check = check_final_report(report(heading, FINAL_REPORT_ITEMS, skip=WITHOUT_9_AND_13), R19)
    assert check.missing == WITHOUT_9_AND_13
    assert check.present == tuple(k for k in ALL_19 if k not in WITHOUT_9_AND_13)


def test_the_seed_questions_verbatim_in_a_numbered_markdown_list() -> None:
    text = "\n".join(f"{it.number}. {it.question}\n\n   {answer(it)}\n"
                     for it in FINAL_REPORT_ITEMS)
    assert check_final_report(text, R19).present == ALL_19


def test_punctuation_and_apostrophes_in_the_question_do_not_matter() -> None:
    text = (
        "Was the vulnerability detected by the CA's normal operation - if it was not, "
        "please explain why\nYes, by CT monitoring.\n"
        "If the vulnerability was detected in the most recent audit, was it remediated? "
        "If not, please explain why.\nIt was not detected by the audit.\n"
    )
    check = check_final_report(text, R19)
    assert set(check.present) == {"detected_by_normal_operation", "recent_audit_remediated"}


# ---------------------------------------------------------------- rewordings

REWORDED = """\
# Final Security Incident Report — INC-2026-0001

## Affected certificates and domains
See attached CSV (1,204 certificates).

## Incident detection
Our CT monitor alerted on 2026-11-24.

## Discrepancies between reports
None; all our updates agreed.

## Root cause / exploit
A validation bypass in the DNS-01 path.

## Affected systems
The RA front end.

## Attack vector
An unauthenticated API endpoint.

## Chronology
- 2026-11-24 09:00 alert
- 2026-11-24 10:30 issuance stopped

## Attribution
Unknown external party.

## Logs (appendix)
Appendix A, 40 pages.

## Normal operation
Yes, by the CT monitor.

## Found in the most recent audit
No.

## Audit detection
No; the audit sampled a different period.

## Audit remediation
Not applicable: the audit did not detect it, so nothing was remediated.

## CP/CPS changes
Section 3.2.2.4 is amended.

## Closure
All affected certificates revoked by 2026-11-26.
"""


def test_reworded_headings_are_recognised() -> None:
    check = check_final_report(REWORDED, R19)
    assert check.present == ALL_19
    assert not check.numbered
    assert check.sections["timeline"].startswith("- 2026-11-24 09:00 alert")
    assert check.sections["cp_cps_changes"] == "Section 3.2.2.4 is amended."


DOCX_TEXT = """\
Final report
CA name: Example CA
Certificates and domains involved: see attached list.
How the incident was detected: CT monitor alert.
Mismatch in reports over time: none.
Description of the exploit: validation bypass.
Infrastructure compromised: RA front end.
How the infrastructure was compromised: open API endpoint.
Timeline of events: see table below.
Who perpetrated the breach: unknown.
Log files: appendix A.
Detected by normal operation: yes.
Discovered in the most recent audit: no.
Detected by the most recent audit: no.
Remediated after the most recent audit: not applicable, it was not detected.
Changes to the CP/CPS: section 3.2.2.4.
How the issue was closed: certificates revoked.
"""


def test_docx_label_value_lines() -> None:
    check = check_final_report(DOCX_TEXT, R19)
    assert check.present == ALL_19
    assert check.sections["perpetrator"] == "unknown."


# ---------------------------------------------------------------- empty and N/A


def test_a_heading_without_content_is_missing() -> None:
    text = REWORDED.replace("Unknown external party.\n", "")
    check = check_final_report(text, R19)
    assert check.missing == ("perpetrator",)
    assert check.sections["perpetrator"] == ""


@pytest.mark.parametrize("placeholder", ["N/A", "n/a.", "TBD", "-", "**N/A**", "NA"])
def test_a_bare_placeholder_is_missing(placeholder: str) -> None:
    text = REWORDED.replace("Unknown external party.", placeholder)
    assert check_final_report(text, R19).missing == ("perpetrator",)


@pytest.mark.parametrize("answer_text", ["N/A - there was no mismatch.", "None.", "No"])
def test_a_reason_or_a_fact_is_an_answer(answer_text: str) -> None:
    text = REWORDED.replace("None; all our updates agreed.", answer_text)
    assert "report_mismatch" in check_final_report(text, R19).present


def test_a_numbered_heading_followed_only_by_the_question_is_missing() -> None:
    text = report(NUMBERED_STYLES["bare n."], FINAL_REPORT_ITEMS).replace(
        answer(FINAL_REPORT_ITEMS[2]), FINAL_REPORT_ITEMS[2].question
    )
    assert check_final_report(text, R19).missing == ("report_mismatch",)


def test_sections_are_bounded() -> None:
    text = "Timeline:\n" + "2026-11-24 something happened\n" * 2000
    section = check_final_report(text, R19).sections["timeline"]
    assert len(section) == MAX_SECTION_CHARS
    assert section.endswith("…")


# ---------------------------------------------------------------- the 2026-02 ruleset


def test_2026_numbers_shift_without_log_files() -> None:
    items_26 = R26.final_report_items
    check = check_final_report(report(NUMBERED_STYLES["bare n."], items_26), R26)
    assert len(items_26) == 14
    assert check.present == ALL_26
    assert "log_files" not in check.present + check.missing
    # "9." is item 9 of 2026-02, which is detection by normal operation
    assert check.sections["detected_by_normal_operation"] == answer(items_26[8])


def test_2026_report_missing_items_9_and_13_by_number() -> None:
    items_26 = R26.final_report_items
    skip = (items_26[8].key, items_26[12].key)  # numbers 9 and 13 of 2026-02
    check = check_final_report(report(NUMBERED_STYLES["Item n"], items_26, skip=skip), R26)
    assert check.missing == skip == ("detected_by_normal_operation", "cp_cps_changes")


def test_a_2019_template_report_read_under_2026_trusts_the_titles() -> None:
    # The CA filled in the old 15-item template; its "10." is 2026's item 9.
    text = report(NUMBERED_STYLES["n) title"], FINAL_REPORT_ITEMS)
    check = check_final_report(text, R26)
    assert check.present == ALL_26
    assert check.sections["detected_by_normal_operation"] == answer(FINAL_REPORT_ITEMS[9])
    # The log-files section ended the perpetrator section instead of joining it.
    assert check.sections["perpetrator"] == answer(FINAL_REPORT_ITEMS[7])


def test_a_2019_report_under_2019_with_untitled_numbers_misses_nothing() -> None:
    text = report(NUMBERED_STYLES["bare n."], FINAL_REPORT_ITEMS)
    assert check_final_report(text, R26).missing == ()  # 15 numbers fill 14 slots


# ---------------------------------------------------------------- lists inside items


def test_a_numbered_timeline_inside_item_7_does_not_fill_missing_items() -> None:
    timeline = "\n".join(f"{i}. 2026-11-{10 + i} event {i}" for i in range(1, 12))
    text = report(NUMBERED_STYLES["bare n."], FINAL_REPORT_ITEMS, skip=WITHOUT_9_AND_13)
    text = text.replace(answer(FINAL_REPORT_ITEMS[6]), "Events:\n" + timeline)
    check = check_final_report(text, R19)
    assert check.missing == WITHOUT_9_AND_13
    assert "event 11" in check.sections["timeline"]
    assert check.sections["perpetrator"] == answer(FINAL_REPORT_ITEMS[7])


def test_a_numbered_list_under_markdown_headings_is_content() -> None:
    text = report(NUMBERED_STYLES["## n. title"], FINAL_REPORT_ITEMS, skip=WITHOUT_9_AND_13)
    text = text.replace(answer(FINAL_REPORT_ITEMS[0]), "1. a.example\n2. b.example\n9. c.example")
    check = check_final_report(text, R19)
    assert check.missing == WITHOUT_9_AND_13
    assert "9. c.example" in check.sections["certificates_and_domains"]


def test_a_table_of_contents_does_not_empty_the_sections() -> None:
    toc = "\n".join(f"{it.number}. {it.title}" for it in FINAL_REPORT_ITEMS)
    body = report(NUMBERED_STYLES["n) title"], FINAL_REPORT_ITEMS)
    check = check_final_report("Contents\n" + toc + "\n\n" + body, R19)
    assert check.present == ALL_19


def test_a_stray_short_list_is_not_a_numbered_report() -> None:
    text = REWORDED.replace("See attached CSV (1,204 certificates).", "1. a\n2. b\n3. c\n4. d")
    check = check_final_report(text, R19)
    assert not check.numbered
    assert check.present == ALL_19


def test_prose_starting_with_a_title_word_is_not_a_heading() -> None:
    text = "Timeline of the project was tight, and detection took a day.\nClosure follows."
    assert check_final_report(text, R19).present == ()


# ---------------------------------------------------------------- is it a final report?


@pytest.mark.parametrize(
    ("subject", "names", "expected"),
    [
        ("Re: [INC-2026-0001] Final report", [], True),
        ("[INC-2026-0001] final security incident report", [], True),
        ("[INC-2026-0001] FINAL-REPORT attached", [], True),
        ("[INC-2026-0001] update", ["INC-2026-0001-Final.docx"], True),
        ("[INC-2026-0001] update", ["certs.csv"], False),
        ("[INC-2026-0001] the final word on the report", [], False),
    ],
)
def test_looks_like_final_report_by_subject_or_attachment(
    subject: str, names: list[str], expected: bool
) -> None:
    assert looks_like_final_report(subject, names, "Short update.", R19) is expected


def test_looks_like_final_report_by_five_items() -> None:
    five = report(TEXT_STYLES["title:"], FINAL_REPORT_ITEMS[:5])
    four = report(TEXT_STYLES["title:"], FINAL_REPORT_ITEMS[:4])
    assert looks_like_final_report("Update", [], five, R19)
    assert not looks_like_final_report("Update", [], four, R19)


# ---------------------------------------------------------------- never raises

_REPORT_LINES = st.sampled_from(
    [*(it.question for it in FINAL_REPORT_ITEMS), *(it.title + ":" for it in FINAL_REPORT_ITEMS),
     "1.", "2)", "Item 3", "## 4.", "**5.**", "N/A", "", "text", "#", "**", "1. 1. 1.", "99.",
     "Q", "Item", "(7", "7 -", "- ", ">"]
)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_check_final_report_never_raises_on_any_text(text: str) -> None:
    for ruleset in (R19, R26):
        check = check_final_report(text, ruleset)
        assert isinstance(check, ReportCheck)
        assert set(check.present) | set(check.missing) == set(ruleset.report_item_keys())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_REPORT_LINES, st.text(max_size=30)), max_size=60), st.text())
def test_report_shaped_text_never_raises(lines: list[str], subject: str) -> None:
    text = "\n".join(lines)
    for ruleset in (R19, R26):
        check = check_final_report(text, ruleset)
        assert not set(check.present) & set(check.missing)
        assert all(len(s) <= MAX_SECTION_CHARS for s in check.sections.values())
        looks_like_final_report(subject, [subject], text, ruleset)


def test_items_after_pasted_logs_are_still_found() -> None:
    logs = "\n".join(f"2026-11-24T10:{i % 60:02d}:00Z ra01 {i}. served" for i in range(20_000))
    text = report(NUMBERED_STYLES["n) title"], FINAL_REPORT_ITEMS).replace(
        answer(FINAL_REPORT_ITEMS[8]), "Appendix A:\n" + logs
    )
    check = check_final_report(text, R19)
    assert check.present == ALL_19
    assert check.sections["closure"] == answer(FINAL_REPORT_ITEMS[14]) + (
        "\n\nKind regards,\nExample CA"
    )
