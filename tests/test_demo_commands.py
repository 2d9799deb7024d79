"""`make demo` in the environment `make install` builds: the real target serves a store and prints what to run
next, and every command it prints works there, not only in the dev environment the tests run in.

That environment is the dev one with everything outside `make install`'s extras hidden: the extras are read from
the Makefile's own install line, resolved through the installed packages' metadata into every distribution they
bring, and any module that only other distributions provide fails to import, as it would in a fresh `.venv`
(a `sitecustomize` on PYTHONPATH hides them, in the server and in every printed command alike)."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT
from tests.service_helpers import free_port

ALWAYS_THERE = {"pip", "setuptools", "_distutils_hack", "pkg_resources"}  # every virtualenv has them


def install_extras() -> set[str]:
    """The extras `make install` installs, from the Makefile's own pip line."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(VENV)/.stamp-run:", 1)[1].split("\n\n", 1)[0]
    return set(re.search(r"pip install .*-e '\.\[([a-z,]+)\]'", recipe).group(1).split(","))


def distributions_of(project: str, extras: set[str]) -> set[str]:
    """Every installed distribution that `project[extras]` brings, itself included."""
    seen, todo = set(), [(project, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (canonicalize_name(name), wanted) in seen:
            continue
        seen.add((canonicalize_name(name), wanted))
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # not installed here (another platform's): nothing to import
            continue
        for line in requirements:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
                todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in seen}


def hidden_modules(extras: set[str]) -> set[str]:
    kept = distributions_of("latentlab", extras)
    return {module for module, dists in metadata.packages_distributions().items()
            if module not in ALWAYS_THERE and not {canonicalize_name(d) for d in dists} & kept}


SITECUSTOMIZE = '''
import sys
HIDDEN = {hidden!r}

class NotInstalled:
    """Modules of distributions that `make install` does not install cannot be imported."""
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
'''


@pytest.fixture(scope="module")
def install_env(tmp_path_factory) -> dict:
    site = tmp_path_factory.mktemp("install-env")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(hidden=sorted(hidden_modules(install_extras()))))
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "PYTHONPATH": str(site), "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_the_install_environment_hides_what_it_does_not_install(install_env):
    hidden = subprocess.run([sys.executable, "-c", "import pytest"], env=install_env, capture_output=True, text=True)
    assert "No module named 'pytest'" in hidden.stderr  # a dev-only package: the simulation is not the dev env
    assert subprocess.run([sys.executable, "-c", "import httpx, torch, fastapi"], env=install_env).returncode == 0


def printed_commands(output: str) -> tuple[dict, list[str], str]:
    """What `make demo` tells the user to run: the environment it exports, the shell commands and the Python lines
    (comments dropped)."""
    url = re.search(r"export LATENTLAB_URL=(\S+)", output).group(1)
    lines = [line.split("#", 1)[0].strip() for line in output.splitlines()]
    shell = [line for line in lines if line.startswith("latentlab ") and " -o " in line]
    python = output.split("or from Python:", 1)[1].split("Ctrl-C", 1)[0]
    python = "\n".join(line.split("    # ", 1)[0].strip() for line in python.splitlines() if line.strip())
    assert shell and url in python
    return {"LATENTLAB_URL": url}, shell, python


def wait_until_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "the demo stopped or never became ready"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)


@pytest.mark.slow
def test_make_demo_and_the_commands_it_prints_work_where_make_install_puts_them(semantic_store, install_env, tmp_path):
    port, venv = free_port(), Path(sys.executable).parents[1]
    demo = subprocess.Popen(["make", "--no-print-directory", "demo", f"VENV={venv}", f"MODEL_DIR={semantic_store}",
                             f"PORT={port}", "-o", f"{venv}/.stamp-run"],  # the test's venv stands in: no reinstall
                            cwd=ROOT, env={**install_env, "LOG_LEVEL": "warning"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        printed = ""
        while "Ctrl-C stops it." not in printed:  # the instructions come before the server starts
            line = demo.stdout.readline()
            assert line, f"make demo ended early:\n{printed}"
            printed += line
        env, shell, python = printed_commands(printed)
        wait_until_ready(env["LATENTLAB_URL"], demo)
        env = {**install_env, **env}
        for command in shell:
            done = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, f"{command}\n{done.stderr}"
            out = shlex.split(command)[shlex.split(command).index("-o") + 1]
            assert (tmp_path / out).read_bytes().startswith(b"\x89PNG"), command
        (tmp_path / "samples.png").unlink()
        done = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{python}\n{done.stderr}"
        assert (tmp_path / "samples.png").read_bytes().startswith(b"\x89PNG")
    finally:
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()
