"""Collection policy: tests that read the shared corpus run only where it is present."""

from __future__ import annotations

import pytest

from tests.corpus import CORPUS, shared_corpus_present


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "shared_corpus: reads ../shared/corpus; not collected where it is absent")


def pytest_report_header(config: pytest.Config) -> str:
    if shared_corpus_present():
        return f"shared corpus: {CORPUS}"
    return (f"shared corpus: absent ({CORPUS}); its extra tests are deselected, "
            "tests/mailcorpus runs instead")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shared_corpus_present():
        return
    keep = [item for item in items if item.get_closest_marker("shared_corpus") is None]
    dropped = [item for item in items if item.get_closest_marker("shared_corpus") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
