"""Event kinds come from one Enum in bot/rules/events.py, not from strings written at each site."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.rules.events import EventKind

BOT = Path(__file__).resolve().parent.parent / "bot"


def _string_constants(node: ast.expr) -> list[str]:
    """The plain string literals a `kind=` expression can evaluate to (f-strings aside)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _string_constants(node.body) + _string_constants(node.orelse)
    return []


def test_no_event_is_recorded_with_a_kind_written_as_a_string():
    written = []
    for path in sorted(BOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "Event"):
                continue
            for keyword in node.keywords:
                if keyword.arg == "kind":
                    written += [f"{path.relative_to(BOT.parent)}:{node.lineno}: {value!r}"
                                for value in _string_constants(keyword.value)]
    assert written == []


def test_the_stored_strings_are_those_of_the_timeline_before_the_enum():
    # Databases, exports and the operator's views already hold these strings.
    assert EventKind.INCIDENT_OPENED == "incident-opened"
    assert f"{EventKind.NOTIFICATION_LATE}" == "notification-late"
    assert len({kind.value for kind in EventKind}) == len(EventKind)
