"""Several service processes on one store agree: what replicas behind a load balancer must guarantee."""
import sys

import httpx
import pytest

from tests.conftest import ROOT
from tests.service_helpers import copy_store, publish_trained, start_service, wait_for, wait_serving

sys.path.insert(0, str(ROOT / "benchmarks"))
from load import same_picture  # noqa: E402


def stop(proc):
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_two_replicas_on_one_store_agree_pick_up_versions_and_serve_pinned_ones(tmp_path, trained_store, fashion_dir):
    root = copy_store(trained_store, tmp_path / "store")
    env = {"MODEL_DIR": str(root), "DEVICE": "cpu", "RELOAD_INTERVAL": "0.5", "LOG_LEVEL": "warning"}
    replicas = [start_service(env) for _ in range(2)]
    try:
        for proc, url in replicas:
            wait_serving(url, proc)
        body = {"model": "dcgan", "seed": 7, "count": 8, "scale": 2}
        first, second = (httpx.post(f"{url}/generate", json=body, timeout=30) for _, url in replicas)
        assert first.status_code == second.status_code == 200 and same_picture(first.content, second.content)

        assert publish_trained(root, fashion_dir, seed=9) == 2  # gan v2, while both serve
        for _, url in replicas:
            wait_for(lambda: httpx.get(f"{url}/readyz").json()["serving"]["gan"] == 2)
        latest = [httpx.post(f"{url}/generate", json={"model": "gan", "seed": 1}, timeout=30) for _, url in replicas]
        assert {r.headers["x-model-version"] for r in latest} == {"2"} and same_picture(*(r.content for r in latest))
        pinned = [httpx.post(f"{url}/generate", json={"model": "gan", "version": 1, "seed": 1}, timeout=30)
                  for _, url in replicas]
        assert {r.headers["x-model-version"] for r in pinned} == {"1"} and same_picture(*(r.content for r in pinned))
        assert not same_picture(pinned[0].content, latest[0].content)
    finally:
        for proc, _ in replicas:
            stop(proc)


@pytest.mark.slow
def test_workers_run_several_processes_behind_one_port(trained_store):
    proc, url = start_service({"MODEL_DIR": str(trained_store), "DEVICE": "cpu", "WORKERS": "2"})
    try:
        wait_serving(url, proc, timeout=120)  # one worker is ready; the other may still be loading its models
        bodies = [{"model": "gan", "seed": s, "count": 2} for s in range(12)]
        with httpx.Client(timeout=30) as client:
            # new connections go to either worker: once both have loaded, every request is answered
            wait_for(lambda: all(client.post(f"{url}/generate", json=b, headers={"Connection": "close"}).status_code
                                 == 200 for b in bodies), timeout=120, interval=0.5)
    finally:
        stop(proc)
    assert "Started parent process" in proc.stdout.read()  # uvicorn's supervisor of the 2 workers
