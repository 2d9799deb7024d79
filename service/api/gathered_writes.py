"""uvicorn's C HTTP protocol (httptools on uvloop), with each response's writes gathered into one send.

uvicorn writes a response's status line and headers, then its body, as two `transport.write` calls;
uvloop sends each at once, so a small PNG costs two syscalls on the event loop, with the GIL held. The
two come from the same turn of the loop (nothing awaits between them), so buffering a connection's
writes until the end of the turn sends the same bytes, in the same order, in one syscall.
"""
from __future__ import annotations

import asyncio

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools missing: uvicorn picks its pure-Python parser, and this module is not used
    HttpToolsProtocol = None


class GatheredWrites:
    """A transport whose writes within one turn of the event loop leave as one `write`."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()  # a response's last bytes go out before the connection closes
        self._transport.close()

    def __getattr__(self, name: str):  # everything else (pausing, extra info, abort) is the transport's own
        return getattr(self._transport, name)


if HttpToolsProtocol is not None:
    class GatheringHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(GatheredWrites(transport, self.loop))
else:
    GatheringHttpToolsProtocol = None
