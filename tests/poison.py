"""Analysers for the analysis pool's children that misbehave on a marked message.

A real parser bug that segfaults or loops for ever on some input is what the
pool must contain; none is at hand on demand, so a message asks for the
misbehaviour in a header:

    X-Poison: kill <pidfile>       the child writes its pid and is SIGKILLed
                                   (as by the kernel's out-of-memory killer)
    X-Poison: kill-once <pidfile>  the same, the first time only
    X-Poison: hang <pidfile>       the child writes its pid and never returns
    X-Poison: oom <pidfile>        the child writes its pid and raises MemoryError
                                   (as a parse past [bot] analysis_memory_limit)

Every other message, and a kill-once message the second time, is analysed by
the real `analyze`. The functions are module-level so that a spawned child
can import them by name.
"""

from __future__ import annotations

import os
import signal
import threading
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from bot.service.analysis import Analysis, analyze


def analyse_or_misbehave(raw: bytes, *args: Any, **kwargs: Any) -> Analysis:
    asked = BytesHeaderParser().parsebytes(raw)["X-Poison"]  # unfolded: paths are long
    if asked:
        what, path = str(asked).split()
        pidfile = Path(path)
        killed = pidfile.read_text().split() if pidfile.exists() else []
        if what != "kill-once" or not killed:
            pidfile.write_text("\n".join([*killed, str(os.getpid())]))
            if what == "hang":
                threading.Event().wait()
            if what == "oom":
                raise MemoryError
            os.kill(os.getpid(), signal.SIGKILL)
    return analyze(raw, *args, **kwargs)
