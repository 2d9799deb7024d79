"""The containers, proven without a Docker engine: compose files validate, and the compose commands
themselves, run on this host against a temporary folder standing in for the volume, train, publish
and serve."""
import os
import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests.conftest import ROOT
from tests.service_helpers import copy_model, free_port, wait_serving

COMPOSE = shutil.which("docker-compose")
COMPOSE_FILES = sorted(ROOT.glob("docker-compose*.yml"))


@pytest.fixture(scope="module")
def compose():
    if COMPOSE is None:
        message = "docker-compose is needed to validate the compose files: apt-get install docker-compose"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return COMPOSE


def compose_config(compose, env=None, file="docker-compose.yml") -> dict:
    """The compose file as compose itself reads it: interpolated, anchors merged, every profile."""
    clean = {k: v for k, v in os.environ.items() if k not in ("ARCH", "EPOCHS", "DEVICE", "PORT")}
    result = subprocess.run([compose, "-f", file, "--profile", "cpu", "config"], cwd=ROOT, capture_output=True,
                            text=True, env={**clean, **(env or {})}, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_every_compose_file_validates(compose):
    assert COMPOSE_FILES
    for path in COMPOSE_FILES:
        result = subprocess.run([compose, "-f", path.name, "config", "--quiet"], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_compose_services_volume_and_gpus(compose):
    services = compose_config(compose)["services"]
    assert {"trainer", "service", "trainer-cpu", "service-cpu"} <= set(services)
    for name in ("trainer", "service", "trainer-cpu", "service-cpu"):
        s = services[name]
        mount = next(v for v in s["volumes"] if v.startswith("models:"))
        assert s["environment"]["MODEL_DIR"] == mount.split(":")[1] == "/models"
        assert mount.endswith(":ro") == name.startswith("service")  # read-write for the trainer only
        gpu = s.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        if name.endswith("-cpu"):
            assert gpu is None and s["profiles"] == ["cpu"]
        else:
            assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["service"]["ports"][0]["target"] == 8000
    replicas = compose_config(compose, {"PORT": "8000-8002", "WORKERS": "2"})["services"]["service"]
    assert str(replicas["ports"][0]["published"]) == "8000-8002"  # one host port per replica under --scale
    assert str(replicas["environment"]["WORKERS"]) == "2"
    assert services["trainer"]["command"][:4] == ["--arch", "dcgan", "--epochs", "5"]  # the defaults
    drain = float(services["service"]["environment"]["DRAIN_TIMEOUT_S"])
    assert _seconds(services["service"]["stop_grace_period"]) > drain  # the drain ends before Docker's SIGKILL
    changed = compose_config(compose, {"ARCH": "gan", "EPOCHS": "40"})["services"]["trainer"]["command"]
    assert changed[:4] == ["--arch", "gan", "--epochs", "40"]  # changed from the environment, no edit


def _seconds(duration: str) -> float:
    return float(duration.rstrip("s"))


def test_the_balanced_profile_puts_haproxy_with_the_shipped_config_before_three_replicas(compose):
    result = subprocess.run([compose, "--profile", "balanced", "config"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    balancer = services["balancer"]
    assert any(v.startswith(f"{ROOT / 'deploy' / 'haproxy.cfg'}:") or v.startswith("./deploy/haproxy.cfg:")
               or "deploy/haproxy.cfg" in str(v) for v in balancer["volumes"])
    targets = sorted(balancer["environment"][f"LATENTLAB_REPLICA{i}"] for i in (1, 2, 3))
    assert targets == ["replica-1:8000", "replica-2:8000", "replica-3:8000"]
    for i in (1, 2, 3):
        replica = services[f"replica-{i}"]
        assert not replica.get("ports") and replica["entrypoint"] == ["python", "-m", "service"]
        assert any(v.startswith("models:/models") and v.endswith(":ro") for v in replica["volumes"])
        assert _seconds(replica["stop_grace_period"]) > float(replica["environment"]["DRAIN_TIMEOUT_S"])


def test_dockerfile_targets_users_and_layer_order():
    text = (ROOT / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", text, flags=re.S | re.M))
    assert {"base", "trainer", "service"} <= set(stages)
    assert "pip install \"torch==" in stages["base"] and "COPY shared" not in stages["base"]
    assert "dataset-fashion-mnist" in stages["trainer"] and "[train]" in stages["trainer"]
    assert "[serve,onnx]" in stages["service"] and "[train]" not in stages["service"] and "trainer" not in stages["service"]
    for stage in ("trainer", "service"):
        body = stages[stage]
        assert "USER latentlab" in body
        assert body.index("pip install") < body.index("COPY shared")  # code changes do not reinstall
    assert "HEALTHCHECK" in stages["service"] and "/readyz" in stages["service"]
    assert "STOPSIGNAL SIGTERM" in stages["service"]  # what the drain answers
    assert ".venv" in (ROOT / ".dockerignore").read_text()


def host_command(service: dict, overrides: dict, extra_args=()) -> tuple[list[str], dict]:
    """A compose service's entrypoint + command and environment, to run on this host."""
    argv = [*service["entrypoint"], *service.get("command", []), *extra_args]
    assert argv[0] == "python"
    env = {**os.environ, **{k: str(v) for k, v in service["environment"].items()}, **overrides}
    return [sys.executable, *argv[1:]], env


@pytest.mark.slow
def test_compose_commands_train_publish_and_serve_on_the_host(compose, tmp_path, fashion_dir, trained_store):
    services = compose_config(compose, {"ARCH": "gan", "EPOCHS": "1"})["services"]
    # the volume as a first `docker compose up trainer` leaves it: gan v1 (the suite's shared build, which the
    # trainer's own tests check; a trainer process here costs 15-25 s, most of it exporting the forms)
    volume = copy_model(trained_store / "gan", tmp_path / "models", "gan").parent
    tiny = ("--limit", "512", "--eval-samples", "500", "--encoder-steps", "5")
    train_argv, train_env = host_command(services["trainer"], {"MODEL_DIR": str(volume)}, tiny)

    port = free_port()
    serve_argv, serve_env = host_command(services["service"], {"MODEL_DIR": str(volume), "HOST": "127.0.0.1",
                                                               "PORT": str(port)})
    proc = subprocess.Popen(serve_argv, cwd=ROOT, env=serve_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(url, proc)
        r = httpx.post(f"{url}/generate", json={"model": "gan", "seed": 0, "count": 8}, timeout=30)
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n" and r.headers["x-model-version"] == "1"
        # the trainer as `docker compose up trainer` runs it: the running service picks its version up
        second = subprocess.run(train_argv, cwd=ROOT, env=train_env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0 and second.stdout.strip() == str(volume / "gan" / "v2"), second.stderr
        interval = float(services["service"]["environment"]["RELOAD_INTERVAL"])
        deadline = time.monotonic() + interval * 4 + 10
        while httpx.get(f"{url}/readyz").json()["serving"].get("gan") != 2:
            assert time.monotonic() < deadline, "the new version was not picked up"
            time.sleep(0.5)
        assert httpx.get(f"{url}/models/gan").json()["versions"][-1]["manifest"]["metrics"]["samples"] == 500
    finally:
        proc.terminate()
        proc.wait(timeout=30)
