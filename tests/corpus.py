"""Where the shared third-party test corpus lives; tests read it in place, never copy it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS = Path(
    os.environ.get("ROOTNOTIFY_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)


def corpus_file(relative: str) -> Path:
    """The corpus file at `relative`, or skip the test saying why."""
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(f"corpus file {relative} not found under {CORPUS} (../shared/corpus absent)")
    return path


def corpus_files(folder: str, pattern: str = "*.eml") -> list[Path]:
    """All corpus files in `folder` matching `pattern` (empty when the corpus is absent)."""
    base = CORPUS / folder
    return sorted(base.glob(pattern)) if base.is_dir() else []
