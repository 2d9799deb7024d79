"""The serving engine through HTTP: batching across requests, load shedding, disconnects, health."""
import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.service_helpers import copy_store, make_client, png, wait_for, wait_ready

pytestmark = pytest.mark.fast  # make check runs it on every commit

SERVICE_SETTINGS = {"max_batch_latents": 32, "max_batch_wait_ms": 5}  # for the conftest `client`

def pixels(response) -> np.ndarray:
    return np.asarray(png(response), dtype=np.int16)


def services(client):
    return client.app.state.services


def batched_latents(client) -> float:
    return services(client).telemetry.registry.get_sample_value("latentlab_batch_latents_sum", {"model": "dcgan"}) or 0


def test_concurrent_mixed_requests_each_get_their_own_images(client):
    bodies = [{"model": "dcgan", "seed": seed, "count": count, "nrow": 4}
              for seed, count in [(1, 1), (2, 5), (3, 40), (4, 2), (5, 17), (6, 1), (7, 8), (8, 3)] * 3]
    alone = [pixels(client.post("/generate", json=b)) for b in bodies[:8]]  # one at a time: no one to batch with
    before = batched_latents(client)
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda b: pixels(client.post("/generate", json=b)), bodies))
    for i, image in enumerate(together):
        # batched with others, a pixel may differ by at most one grey level (float rounding of another batch size)
        assert image.shape == alone[i % 8].shape and np.abs(image - alone[i % 8]).max() <= 1, bodies[i]
    ran = batched_latents(client) - before
    assert ran == sum(b["count"] for b in bodies)  # every latent computed exactly once


def test_a_full_queue_gets_503_with_retry_after_and_the_service_keeps_serving(client):
    budget = services(client).engine.budget
    taken = budget.limit - budget.used
    assert budget.reserve(taken)  # as if the queues were full of other requests' latents
    try:
        r = client.post("/generate", json={"model": "gan", "seed": 0, "count": 4})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1 and "MAX_QUEUED_LATENTS" in r.json()["detail"]
        assert client.get("/healthz").status_code == 200
    finally:
        budget.release(taken)
    assert png(client.post("/generate", json={"model": "gan", "seed": 0, "count": 4}))
    assert 'latentlab_shed_requests_total{model="gan",reason="queue_full"} 1.0' in client.get("/metrics").text


class Gate:
    """Wraps a model's forward so the test decides when it may finish."""

    def __init__(self, batcher):
        self.batcher, self.forward = batcher, batcher.forward
        self.open, self.entered, self.seen = threading.Event(), threading.Event(), []
        batcher.forward = self

    def __call__(self, latents):
        self.seen.append(latents.clone())
        self.entered.set()
        assert self.open.wait(30)
        return self.forward(latents)

    def restore(self):
        self.open.set()
        self.batcher.forward = self.forward


def test_health_answers_while_a_big_batch_computes(client):
    gate = Gate(services(client).registry.get("dcgan").batcher)
    with ThreadPoolExecutor(1) as pool:
        try:
            big = pool.submit(client.post, "/sweep", json={"model": "dcgan", "count": 32, "dims": [1, 2],
                                                            "values": [-1, 0, 1, 2]})
            assert gate.entered.wait(10)
            assert client.get("/healthz").json() == {"status": "ok"}
            assert client.get("/readyz").status_code == 200
            assert not big.done()  # the batch is still computing
        finally:
            gate.restore()
        assert png(big.result(30))


def test_a_client_that_disconnects_while_queued_costs_no_forward(client):
    batcher = services(client).registry.get("gan").batcher
    gate = Gate(batcher)
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/generate", json={"model": "gan", "seed": 1, "count": 1})
            assert gate.entered.wait(10)
            body = json.dumps({"model": "gan", "seed": 2, "count": 3}).encode()
            status = client.portal.call(asyncio_request_then_disconnect, client.app, body)
            gate.open.set()
            assert png(first.result(30))
        assert status == 499
        assert [len(z) for z in gate.seen] == [1]  # the departed request's 3 latents never reached a forward
        assert batcher.budget.used == 0
    finally:
        gate.restore()


async def asyncio_request_then_disconnect(app, body: bytes) -> int:
    """POST /generate over ASGI, and hang up as soon as the body is sent."""
    messages = [{"type": "http.request", "body": body, "more_body": False}, {"type": "http.disconnect"}]
    sent = []

    async def receive():
        if len(messages) == 1:
            await asyncio.sleep(0.2)  # the request is queued behind the held forward by now
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/generate", "raw_path": b"/generate", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    await app(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


@pytest.fixture
def bounded(trained_store, tmp_path):
    """A service that allows 200 ms from a request's arrival to its last image, whose gan forward costs a known
    20 ms per latent (a sleep before the real forward) and can be held at a gate."""
    from service.engine.admission import ForwardCost

    with make_client(copy_store(trained_store, tmp_path / "store"), max_queue_delay_ms=200, max_batch_latents=4) as c:
        wait_ready(c)
        batcher = services(c).registry.get("gan").batcher
        gate = Gate(batcher)
        real = gate.forward
        gate.forward = lambda z: (time.sleep(0.020 * len(z)), real(z))[1]
        batcher.cost = ForwardCost(batcher.max_batch)
        for n in (1, 2, 4, 4):
            batcher.cost.observe(n, 0.020 * n)
        gate.open.set()
        yield c, gate
        gate.restore()


def test_a_request_predicted_past_max_queue_delay_gets_503_at_once(bounded):
    client, gate = bounded
    batcher = gate.batcher
    gate.open.clear()
    with ThreadPoolExecutor(8) as pool:
        held = pool.submit(client.post, "/generate", json={"model": "gan", "seed": 1, "count": 1})
        assert gate.entered.wait(10)
        time.sleep(0.1)  # past the held forward's predicted 20 ms: the predictions count only the queue now
        queued = [pool.submit(client.post, "/generate", json={"model": "gan", "seed": 2 + i, "count": 4}) for i in range(2)]
        wait_for(lambda: batcher.queued == 8)  # 80 and 160 ms of work: both admitted
        started = time.monotonic()
        refused = client.post("/generate", json={"model": "gan", "seed": 9, "count": 4})  # 240 ms: refused
        assert time.monotonic() - started < 0.5  # at once, not after waiting
        gate.open.set()
        assert all(f.result(30).status_code == 200 for f in [held, *queued])
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"  # 240 ms predicted, rounded up
    assert "MAX_QUEUE_DELAY_MS" in refused.json()["detail"]
    metrics = client.get("/metrics").text
    assert 'latentlab_shed_requests_total{model="gan",reason="predicted_wait"} 1.0' in metrics
    assert 'latentlab_request_wait_seconds_count{kind="predicted",model="gan"}' in metrics
    assert 'latentlab_request_wait_seconds_count{kind="actual",model="gan"}' in metrics


def test_a_request_still_waiting_at_its_deadline_gets_503(bounded):
    client, gate = bounded
    gate.open.clear()
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(client.post, "/generate", json={"model": "gan", "seed": 1, "count": 1})
        assert gate.entered.wait(10)
        late = pool.submit(client.post, "/generate", json={"model": "gan", "seed": 2, "count": 2})
        wait_for(lambda: gate.batcher.queued == 2)  # queued, on a busy machine too
        time.sleep(0.4)  # the held forward overruns its prediction, past the queued request's deadline
        gate.open.set()
        assert held.result(30).status_code == 200
        dropped = late.result(30)
    assert dropped.status_code == 503 and int(dropped.headers["retry-after"]) >= 1
    assert "waited" in dropped.json()["detail"]
    assert 'reason="deadline"} 1.0' in client.get("/metrics").text
