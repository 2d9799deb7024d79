"""benchmarks/ablation.py's tables, read from rows as its runs write them: every run with its SWD (a folder of
pictures has no FID), and the ranking's medians over seeds with their ratio to the DCGAN's best recipe."""
import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from ablation import ranking, table  # noqa: E402


def row(recipe: str, seed: int, swd: float, minutes: float = 30.0) -> dict:
    return {"architecture": "dcgan", "recipe": recipe, "epochs": None, "minutes": minutes, "dataset": "folder",
            "image_size": 64, "seed": seed, "FID": None, "SWD": swd, "KID": None, "precision": None, "recall": None,
            "class entropy": None, "seconds": minutes * 60, "steps": 4000, "batch": 64, "steps_per_second": 2.5,
            "limit": None}


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def test_every_run_shows_its_swd_where_there_is_no_fid():
    header, _, *runs = map(cells, table([row("stable", 0, 46.92), row("wide", 0, 26.33)]).splitlines())
    assert [run[header.index("SWD")] for run in runs] == ["46.92", "26.33"]
    assert [run[header.index("FID")] for run in runs] == ["-", "-"]


def test_the_ranking_takes_medians_over_seeds_and_rates_the_others_against_the_best():
    rows = [row("stable", 0, 40.0), row("stable", 1, 44.0), row("wide", 0, 26.0), row("wide", 1, 28.0),
            row("stable", 0, 60.0, minutes=10.0)]
    lines = {(c[1], c[3]): c for c in map(cells, ranking(rows).splitlines()[2:])}
    assert lines[("30", "wide")][4:7] == ["2", "-", "27.00"]          # the best: no ratio
    assert lines[("30", "stable")][4:7] == ["2", "-", "42.00 (1.56x)"]
    assert lines[("10", "stable")][4:7] == ["1", "-", "60.00"]        # alone at its budget: the best there
