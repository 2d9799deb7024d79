"""The work after training, phase by phase, as a user sees it: a progress bar with the phase's name and the time
it has left on a terminal while it runs, and one log line with its seconds when it ends (all there is without a
terminal, or with `--no-progress`).

    with Phase("classes", total=batches, progress=None, log=log) as phase:
        for batch in phase.track(batches_of_latents): ...

`progress`: True or False forces the bar on or off; None shows it when stderr is a terminal.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


class Phase:
    def __init__(self, name: str, total: int, progress: bool | None = None, log: Callable[[str], None] = print,
                 unit: str = "it", initial: int = 0, detail: str = "") -> None:
        self.name, self.total, self.log, self.detail = name, total, log, detail
        self.bar = None
        if sys.stderr.isatty() if progress is None else progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=name, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                       "[{elapsed} elapsed, {remaining} left{postfix}]")
        self.started = time.perf_counter()
        self.seconds: float | None = None  # set when the phase ends

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """`items`, advancing the bar by one after each."""
        for item in items:
            yield item
            self.advance()

    def __enter__(self) -> "Phase":
        return self

    def __exit__(self, kind, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
        if self.bar is not None:
            self.bar.close()
        if kind is None:  # a failure says so itself; an interruption is reported by its caller
            self.log(f"{self.name}: {self.seconds:.1f}s{' (' + self.detail + ')' if self.detail else ''}")
