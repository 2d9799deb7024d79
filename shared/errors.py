"""One error convention for every command (`python -m trainer`, `trainer.evaluate`, `trainer.classifier`,
`service`, `shared`): a problem the user can fix is one line on stderr and a non-zero exit; anything else
is a bug and shows its traceback. Code raises `UserError` subclasses for the first kind, never a broad
`ValueError` catch that would pass a bug off as bad input."""
from __future__ import annotations

import functools
import sys
from typing import Callable


class UserError(Exception):
    """Bad input or a missing file: the message says what to do. Exit 2."""

    exit_code = 2


class WriteFailed(UserError):
    """A write the command needs failed (disk full, no permission); nothing half-written was left. Exit 1."""

    exit_code = 1


def command(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a command's `main`: a `UserError` becomes `PROG: error: MESSAGE` and its exit code."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except UserError as e:
                print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
                return e.exit_code

        return run

    return wrap
