"""Graceful drain of a real `python -m service` process: on SIGTERM it is not ready at once, keeps serving new
requests for DRAIN_NOTICE_S (while balancers notice), then refuses new image requests with 503 + Retry-After,
finishes the request it holds, and exits 0, within DRAIN_TIMEOUT_S."""
import io
import signal
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service_helpers import start_service, wait_serving

# load and timing: it runs alone, after the parallel part of the suite (make test)
pytestmark = pytest.mark.serial


def picture() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def long_projection(url: str, answer: dict, steps: int = 500) -> threading.Thread:
    """A POST /project of `steps` steps (500: seconds of work on the DCGAN) in a thread; its status lands in
    `answer`."""
    def run() -> None:
        started = time.monotonic()
        try:
            r = httpx.post(f"{url}/project", data={"model": "dcgan", "steps": str(steps)},
                           files={"file": ("x.png", picture(), "image/png")}, timeout=120)
            answer.update(status=r.status_code, seconds=time.monotonic() - started)
        except httpx.TransportError as e:
            answer.update(status=type(e).__name__, seconds=time.monotonic() - started)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.slow
def test_sigterm_serves_through_the_notice_then_refuses_finishes_what_it_holds_and_exits_0(trained_store):
    notice = 2.0
    proc, url = start_service({"MODEL_DIR": str(trained_store), "DEVICE": "cpu", "DRAIN_NOTICE_S": str(notice),
                               "DRAIN_TIMEOUT_S": "60", "LOG_LEVEL": "info"})
    try:
        wait_serving(url, proc)
        answer: dict = {}
        projecting = long_projection(url, answer, steps=400)
        time.sleep(1.0)  # the projection is running (its steps take several seconds here)
        assert not answer, "the projection finished before the test could signal: make it longer"
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.2)

        ready = httpx.get(f"{url}/readyz", timeout=5)
        assert ready.status_code == 503 and "draining" in ready.json()["detail"]
        sent = time.monotonic() - signalled
        served = httpx.post(f"{url}/generate", json={"model": "gan", "seed": 0}, timeout=30)
        assert sent < notice and served.status_code == 200  # in the notice: a balancer may not have seen the 503 yet

        time.sleep(max(0.0, notice + 0.3 - (time.monotonic() - signalled)))
        assert not answer, "the projection finished during the notice: make it longer"
        refused = httpx.post(f"{url}/generate", json={"model": "gan", "seed": 0}, timeout=5)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "shutting down" in refused.json()["detail"]
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # alive, only not taking new work

        projecting.join(timeout=120)
        assert answer["status"] == 200, answer  # what it held, it finished
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "SIGTERM: draining" in output and "drained in" in output and "Traceback" not in output


@pytest.mark.slow
def test_an_idle_replica_serves_its_whole_notice_too(trained_store):
    """Nothing in flight is no reason to stop early: a balancer that has not yet seen the 503 may still send."""
    notice = 2.0
    proc, url = start_service({"MODEL_DIR": str(trained_store), "DEVICE": "cpu", "DRAIN_NOTICE_S": str(notice),
                               "LOG_LEVEL": "info"})
    try:
        wait_serving(url, proc)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(notice / 2)
        served = httpx.post(f"{url}/generate", json={"model": "gan", "seed": 0}, timeout=30)
        assert served.status_code == 200 and time.monotonic() - signalled < notice
        output, _ = proc.communicate(timeout=60)
        stopped = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert notice <= stopped < notice + 5, f"stopped {stopped:.1f}s after SIGTERM with a {notice:g}s notice"


def test_the_notice_must_fit_in_the_drain(trained_store):
    from service.api.settings import Settings

    with pytest.raises(ValueError, match="DRAIN_NOTICE_S .10. must be shorter than DRAIN_TIMEOUT_S .5."):
        Settings(drain_notice_s=10, drain_timeout_s=5)


@pytest.mark.slow
def test_the_drain_is_bounded_by_its_timeout(trained_store):
    proc, url = start_service({"MODEL_DIR": str(trained_store), "DEVICE": "cpu", "DRAIN_NOTICE_S": "0",
                               "DRAIN_TIMEOUT_S": "1", "MAX_PROJECT_STEPS": "5000", "LOG_LEVEL": "info"})
    try:
        wait_serving(url, proc)
        answer: dict = {}
        projecting = long_projection(url, answer, steps=4000)
        time.sleep(1.0)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        stopped = time.monotonic() - signalled
        projecting.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert stopped < 10, f"took {stopped:.1f}s to stop with DRAIN_TIMEOUT_S=1"
    assert "drain timeout" in output
