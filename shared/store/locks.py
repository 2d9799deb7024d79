"""Cross-process locks for writers of the store (readers never lock). `flock` locks belong to open file
descriptions: the kernel drops them when their holder dies, even by SIGKILL, so a lock that can be taken
means nobody alive holds it, and a directory whose lock can be taken was abandoned."""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold the lock on `lock_file` (created if missing), waiting for other holders."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def hold(directory: Path) -> int:
    """Mark `directory` as in use for as long as the returned descriptor stays open (close it to release)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def abandoned(directory: Path) -> bool:
    """Whether no living process holds `directory` (see `hold`)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
