"""Three replicas of `python -m service` on one store behind HAProxy (deploy/haproxy.cfg), under a steady load
from the project's client (which retries) and from plain httpx clients (which never do): a rolling restart loses
no request of either, a replica killed with SIGKILL costs none either (the balancer retries on another replica),
it gets traffic again once restarted, and every image answered through the balancer is the same picture as the
same request served by a calm replica (load.same_picture).
(benchmarks/chaos.py measures the same at scale, with wrk, p99s and the overload burst.)"""
import signal
import sys
import time

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT
from tests.service_helpers import free_port, start_service, wait_serving

sys.path.insert(0, str(ROOT / "benchmarks"))
from load import ClientLoad, same_picture  # noqa: E402
from servers import start_balancer, stop  # noqa: E402

# load and timing: it runs alone, after the parallel part of the suite (make test)
pytestmark = pytest.mark.serial


class Replicas:
    def __init__(self, store) -> None:
        self.store, self.ports = store, [free_port() for _ in range(3)]
        started = [self.launch(port) for port in self.ports]  # all three at once, then each waited for
        for proc, url in started:
            wait_serving(url, proc)
        self.procs = [proc for proc, _ in started]

    def launch(self, port: int):
        # a notice of 2 s: four times what the balancer's health check (every 500 ms, one failure) needs to notice
        return start_service({"MODEL_DIR": str(self.store), "DEVICE": "cpu", "LOG_LEVEL": "warning",
                              "DRAIN_NOTICE_S": "2"}, port)

    def start(self, port: int):
        proc, url = self.launch(port)
        wait_serving(url, proc)
        return proc

    def restart(self, i: int, sig: int) -> int | None:
        """Stop replica i with `sig`, start it again on its port; the old process's exit status."""
        self.procs[i].send_signal(sig)
        code = self.procs[i].wait(timeout=60)
        self.procs[i] = self.start(self.ports[i])
        time.sleep(1.5)  # the balancer's health check puts it back after two 200s, 500 ms apart
        return code

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def cluster(trained_store):
    replicas = Replicas(trained_store)
    port = free_port()
    balancer = start_balancer(port, replicas.ports)
    yield replicas, f"http://127.0.0.1:{port}"
    stop(balancer)
    replicas.close()


def same_as_a_calm_replica(answers: dict, port: int, sample: int = 40) -> None:
    for seed in sorted(answers)[::max(1, len(answers) // sample)]:
        calm = httpx.post(f"http://127.0.0.1:{port}/generate", json={"model": "gan", "seed": seed, "count": 4},
                          timeout=30)
        assert same_picture(calm.content, answers[seed]), f"seed {seed}: the balanced answer is not a calm replica's"


# first of the two: the cluster's start (about 8 s) is counted in the first test's time, and the rolling restart is
# the longer test, close to the per-test ceiling on its own
@pytest.mark.slow
def test_a_replica_killed_under_load_costs_nothing_and_serves_again_once_restarted(cluster):
    replicas, url = cluster
    load = ClientLoad(url, "gan", clients=2, retries=False)  # what the balancer alone hides
    time.sleep(2)
    code = replicas.restart(1, signal.SIGKILL)
    served_before = httpx.get(f"http://127.0.0.1:{replicas.ports[1]}/metrics", timeout=10).text
    time.sleep(3)
    load.stop()
    assert code == -signal.SIGKILL
    assert load.failures == [], load.failures[:5]
    served = httpx.get(f"http://127.0.0.1:{replicas.ports[1]}/metrics", timeout=10).text
    assert _generated(served) > _generated(served_before)  # the balancer sends to the restarted replica again
    same_as_a_calm_replica(load.answers, replicas.ports[2])


@pytest.mark.slow
def test_a_rolling_restart_under_load_loses_no_request(cluster):
    replicas, url = cluster
    loads = [ClientLoad(url, "gan", clients=2), ClientLoad(url, "gan", clients=2, retries=False)]
    time.sleep(1)  # the load flowing before the first restart, and after the last
    codes = [replicas.restart(i, signal.SIGTERM) for i in range(3)]
    time.sleep(1)
    for load in loads:
        load.stop()
    assert codes == [0, 0, 0]  # each drained and exited cleanly
    for load in loads:
        assert load.failures == [], load.failures[:5]
        assert len(load.answers) > 30
        same_as_a_calm_replica(load.answers, replicas.ports[0])


def _generated(metrics: str) -> float:
    """Images the replica generated, from its Prometheus text."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("latentlab_images_generated_total{"))


@pytest.mark.fast
def test_the_same_picture_is_within_the_engines_bound_between_runtimes_and_no_further():
    from shared.imaging.png import encode_png
    from shared.imaging.precision import BF16_MAX_GREY_DIFF

    rng = np.random.default_rng(0)
    grid = rng.integers(20, 230, (32, 122), dtype=np.uint8)
    nudged = grid.copy()
    nudged[0, :8] += BF16_MAX_GREY_DIFF  # a few pixels at the bound, as another runtime may draw them
    past = nudged.copy()
    past[0, 0] += 1
    assert same_picture(encode_png(grid), encode_png(grid))
    assert same_picture(encode_png(grid), encode_png(nudged))
    assert not same_picture(encode_png(grid), encode_png(past))  # one pixel past the bound
    assert not same_picture(encode_png(grid), encode_png(rng.integers(20, 230, (32, 122), dtype=np.uint8)))
    assert not same_picture(encode_png(grid), encode_png(grid[:, :60]))  # another grid's shape
