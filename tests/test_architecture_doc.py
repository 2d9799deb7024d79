"""The architecture page's module table names every module of the three packages, and nothing that is gone."""
import re

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.fast  # make check runs it on every commit

PACKAGES = ("shared/store", "shared/imaging", "trainer", "trainer/training", "trainer/training/networks",
            "trainer/publishing", "trainer/evaluation", "service", "service/api", "service/api/routes",
            "service/operations", "service/engine")


def layout_rows() -> dict[str, str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    return {m.group(1).rstrip("/"): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \| (.*) \|$", text, re.M)}


def test_the_module_table_matches_the_tree():
    rows = layout_rows()
    for package in PACKAGES:
        described = rows.get(package, "")
        if package in ("service/api", "service/api/routes"):  # the api row describes routes/ in brackets after it
            before, _, after = rows["service/api"].partition("`routes/` (")
            routes, _, rest = after.partition(")")
            described = routes if package == "service/api/routes" else before + rest
        named = set(re.findall(r"`([a-z0-9_]+\.py)`", described))
        on_disk = {p.name for p in (ROOT / package).glob("*.py") if p.name != "__init__.py"}
        if package != "service":  # `python -m service` is the one entry point the table names
            on_disk.discard("__main__.py")
        assert named >= on_disk, f"{package}: docs/architecture.md does not describe {sorted(on_disk - named)}"
        assert named <= on_disk, f"{package}: docs/architecture.md names missing {sorted(named - on_disk)}"
