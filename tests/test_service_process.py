"""The real `python -m service` process, over a socket."""
import io
import os
import signal
import subprocess
import sys

import httpx
import pytest
from PIL import Image

import service.__main__ as service_main
from tests.conftest import ROOT, assert_user_error, run_cli, run_main
from tests.service_helpers import start_service, wait_serving


@pytest.mark.slow
def test_python_m_service_serves_over_a_socket(trained_store):
    proc, url = start_service({"MODEL_DIR": str(trained_store), "DEVICE": "auto", "RELOAD_INTERVAL": "1"})
    try:
        wait_serving(url, proc)
        r = httpx.post(f"{url}/generate", json={"model": "dcgan", "seed": 0, "count": 8, "scale": 2}, timeout=30)
        assert r.status_code == 200 and r.headers["x-model"] == "dcgan"
        assert Image.open(io.BytesIO(r.content)).size == ((8 * 34 + 2) * 2, 34 * 2 + 4)
        assert httpx.post(f"{url}/sweep", json={"model": "gan"}, timeout=30).status_code == 200
        assert httpx.get(f"{url}/docs").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    # SIGTERM drains (tests/test_drain.py), then the process exits 0
    assert proc.returncode == 0, output
    assert "Application shutdown complete" in output and "Traceback" not in output


@pytest.mark.parametrize("env,needle", [
    ({"DEVICE": "tpu"}, "DEVICE"),
    ({"DEVICE": "cuda:99"}, "cuda:99"),
    ({"PORT": "not-a-port"}, "PORT"),
    ({"MAX_IMAGES": "0"}, "MAX_IMAGES"),
    ({"MAX_SCALE": "65"}, "MAX_SCALE"),  # above the API schema's ceiling
    ({"MAX_QUEUED_LATENTS": "100"}, "MAX_QUEUED_LATENTS"),  # less than MAX_IMAGES: the largest request could never run
])
def test_bad_settings_exit_2_with_one_clear_line(tmp_path, env, needle, monkeypatch, capsys):
    for name, value in {"MODEL_DIR": str(tmp_path), **env}.items():
        monkeypatch.setenv(name, value)
    result = run_main(service_main.main, capsys=capsys)
    assert_user_error(result, needle)


def test_help_lists_every_setting():
    result = run_cli("service", "--help", timeout=60)
    assert result.returncode == 0
    for name in ("MODEL_DIR", "DEVICE", "HOST", "PORT", "RELOAD_INTERVAL", "MAX_IMAGES", "MAX_BODY_BYTES",
                 "PINNED_CACHE_SIZE", "MAX_BATCH_LATENTS", "MAX_BATCH_WAIT_MS", "MAX_QUEUED_LATENTS", "CUDA_GRAPHS"):
        assert name in result.stdout


@pytest.mark.parametrize("operator_value,seen", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_wait_passively_unless_the_operator_says_otherwise(operator_value, seen):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if operator_value is not None:
        env["OMP_WAIT_POLICY"] = operator_value
    # what the policy is when torch's module runs (a lookup such as find_spec is not a load): OpenMP reads it then
    probe = ("import importlib.util, os, sys\n"
             "class Spy:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name != 'torch':\n"
             "            return None\n"
             "        sys.meta_path.remove(self)\n"
             "        spec = importlib.util.find_spec(name)\n"
             "        sys.meta_path.insert(0, self)\n"
             "        run = spec.loader.exec_module\n"
             "        def exec_module(module):\n"
             "            print('torch loads with', os.environ.get('OMP_WAIT_POLICY'))\n"
             "            run(module)\n"
             "        spec.loader.exec_module = exec_module\n"
             "        return spec\n"
             "sys.meta_path.insert(0, Spy())\n"
             "import service.__main__\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.splitlines()[0] == f"torch loads with {seen}", (result.stdout, result.stderr)
