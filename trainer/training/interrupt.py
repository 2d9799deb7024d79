"""Ctrl-C and SIGTERM (what `docker stop` sends) as a request to stop cleanly between steps."""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator


class StopRequested:
    """Turns the first SIGINT/SIGTERM into a flag checked between steps; a second one aborts, except
    under torchrun, whose agent passes on the Ctrl-C that the workers have already received (it kills
    them itself if they do not stop in time)."""

    def __init__(self, abort_on_second: bool = True) -> None:
        self.requested = False
        self.abort_on_second = abort_on_second

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequested"]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals can only be handled on the main thread
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            if self.requested:
                if self.abort_on_second:
                    raise KeyboardInterrupt
                return
            self.requested = True
            print("\nstopping after this step and saving the training state (again to abort now)",
                  file=sys.stderr, flush=True)

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
