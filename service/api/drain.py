"""Graceful drain: what SIGTERM means to a replica behind a load balancer (a rolling deploy, a Kubernetes eviction,
`docker stop`).

1. It stops being ready at once: /readyz answers 503 with the reason, so a health-checking balancer takes it out.
2. For DRAIN_NOTICE_S it keeps serving everything as before: a balancer only stops sending once its next health
   check has seen the 503 (HAProxy: 500 ms here), and Kubernetes needs a few seconds to take a terminating pod out
   of every endpoint list. Requests that arrive in that gap are served, not refused.
3. After the notice it refuses new image requests (every POST) with 503, `Retry-After: 1` and `Connection: close`:
   a balancer that retries (deploy/haproxy.cfg) sends them to another replica, and a client's retries reach one.
4. It finishes what it accepted: every request in flight, and so the queued forwards they wait for; once nothing
   is in flight after the notice, or at DRAIN_TIMEOUT_S at the latest, it closes its port, stops its engine and
   exits 0.

A second SIGTERM, or Ctrl-C, stops at once, the way uvicorn does. The drain needs one process per replica
(WORKERS=1, the layout behind a balancer): uvicorn's multi-worker supervisor stops its workers itself.
"""
from __future__ import annotations

import logging
import signal
import time

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.middleware import send_json

log = logging.getLogger("latentlab.drain")

RETRY_AFTER_S = 1  # another replica can take the request now


class Drain:
    """Whether this replica is draining, why, since when, and whether its notice period is over."""

    def __init__(self, notice_s: float = 0.0) -> None:
        self.notice_s = notice_s
        self.reason: str | None = None
        self.started: float | None = None

    @property
    def draining(self) -> bool:
        """Not ready: from the signal on."""
        return self.reason is not None

    @property
    def refusing(self) -> bool:
        """New image requests refused: once the notice period is over."""
        return self.draining and self.elapsed() >= self.notice_s

    def begin(self, reason: str) -> None:
        if not self.draining:
            self.reason, self.started = reason, time.monotonic()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def detail(self) -> str:
        return f"draining: {self.reason}; finishing the requests in flight, then stopping"


class RefuseWhileDraining:
    """ASGI middleware: once the drain's notice is over, every POST (the image requests) gets 503 + Retry-After."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not self.drain.refusing:
            return await self.app(scope, receive, send)
        await send_json(send, 503, f"this replica is shutting down ({self.drain.reason}): retry, another replica will "
                                   "answer", headers=((b"retry-after", str(RETRY_AFTER_S).encode()),))


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with SIGTERM as the start of a drain rather than of the shutdown."""

    def __init__(self, config: uvicorn.Config, drain: Drain, timeout_s: float) -> None:
        super().__init__(config)
        self.drain, self.timeout_s = drain, timeout_s

    def handle_exit(self, sig: int, frame) -> None:
        if sig == signal.SIGTERM and not self.drain.draining:
            self.drain.begin("SIGTERM received")  # not re-raised after the shutdown: the exit status stays 0
            log.info("SIGTERM: draining (not ready now; serving for %.1fs while balancers notice, then refusing new "
                     "image requests with 503; %d in flight; at most %.0fs)", self.drain.notice_s,
                     len(self.server_state.tasks), self.timeout_s)
            return
        super().handle_exit(sig, frame)  # a second signal, or Ctrl-C: uvicorn's own, prompt shutdown

    async def on_tick(self, counter: int) -> bool:
        if self.drain.draining and not self.should_exit:
            elapsed, in_flight = self.drain.elapsed(), len(self.server_state.tasks)
            if (not in_flight and self.drain.refusing) or elapsed >= self.timeout_s:
                if in_flight:
                    log.warning("drain timeout (%.0fs) with %d request(s) in flight: stopping them", elapsed,
                                in_flight)
                else:
                    log.info("drained in %.1fs: stopping", elapsed)
                self.should_exit = True
                # what is left of DRAIN_TIMEOUT_S bounds uvicorn's own wait for the connections to finish
                self.config.timeout_graceful_shutdown = max(0.5, self.timeout_s - elapsed)
        return await super().on_tick(counter)
