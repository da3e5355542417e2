"""Physical lines of a decompressed text list, each bounded in length."""

from __future__ import annotations

import io
from collections.abc import Iterator

from bot.parse.certlists.records import (
    RejectedLine,
    _clip,
)


class _Lines:
    """Physical lines of a text stream, each at most `max_chars` long.

    An over-long line is replaced by an empty one (so line numbers stay
    right) and noted in `overlong`; the rest of it is skipped a slice at a
    time, which is what keeps a 10-million-column line cheap.
    """

    def __init__(self, text: io.TextIOBase, max_chars: int) -> None:
        self._readline = text.readline
        self._max = max_chars
        self.number = 0
        self.overlong: list[RejectedLine] = []
        self.source = ""

    def __iter__(self) -> Iterator[str]:
        readline, limit = self._readline, self._max
        while True:
            line = readline(limit)
            if not line:
                return
            self.number += 1
            if len(line) == limit and line[-1] != "\n":
                skipped = len(line)
                while True:
                    rest = readline(limit)
                    skipped += len(rest)
                    if not rest or rest[-1] == "\n":
                        break
                self.overlong.append(
                    RejectedLine(
                        self.number,
                        _clip(line),
                        f"line is {skipped:,} characters long, more than {limit:,}",
                        self.source,
                    )
                )
                line = "\n"
            yield line
