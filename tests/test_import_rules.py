"""The architecture's import rules (pyproject's [tool.importlinter]) hold, and they catch a breach."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.fast  # make check runs it on every commit

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_project_keeps_its_import_rules():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module,breach,contract", [
    ("shared/store/layout.py", "import torch", "the store contract does not import torch"),
    ("shared/imaging/latents.py", "import trainer.training.config", "shared imports neither half"),
    ("service/api/limits.py", "import trainer.training.config", "trainer and service never import each other"),
    ("trainer/training/config.py", "import service.api.settings", "trainer and service never import each other"),
    ("trainer/training/loop.py", "import trainer.publishing.publish", "trainer layers: publishing, then training"),
    ("service/engine/batcher.py", "import service.api.schemas", "the serving engine knows nothing of HTTP"),
    ("service/engine/runner.py", "import fastapi", "the serving engine knows nothing of HTTP"),
    ("service/operations/generation.py", "import service.api.deps",
     "service layers: api, then operations, then engine"),
    ("service/operations/animation.py", "import starlette", "the operations speak no HTTP plumbing: no app, routes, "
                                                            "server or ASGI"),
    ("latentlab/results.py", "import shared.imaging.grids", "the client is only a client: no server code, no torch"),
    ("latentlab/client.py", "import torch", "the client is only a client: no server code, no torch"),
])
def test_a_breach_of_each_rule_is_caught(tmp_path, module, breach, contract):
    for item in ("latentlab", "shared", "trainer", "service", "pyproject.toml"):
        copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy
        copy(ROOT / item, tmp_path / item, **({"ignore": shutil.ignore_patterns("assets")} if item == "trainer" else {}))
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{breach}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout
