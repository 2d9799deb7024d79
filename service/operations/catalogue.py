"""What the store holds of a model, as this replica sees it: its versions (complete and damaged), which of them are
in memory and how their forwards run, and a version's training curves. Plain records whose fields are the
response models' (service/api/schemas.py), so that a route answers with `Model.model_validate(record,
from_attributes=True)`; `NotFound` for what the store lacks (a 404 at every front door)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any

from service.engine.registry import ModelRegistry
from shared.store import HISTORY_CSV, REPORT_DIR, DamagedVersion, Manifest, NotFound


@dataclass(frozen=True)
class StoredVersion:
    version: int
    latest: bool
    manifest: Manifest


@dataclass(frozen=True)
class Damaged:
    version: int
    file: str
    problem: str
    expected: str | None
    found: str | None
    served_from_memory: bool
    detail: str


@dataclass(frozen=True)
class Catalogue:
    name: str
    latest: int | None  # the newest complete version (None: only damaged ones)
    serving: int | None  # the version "latest" requests get now
    loaded: list[int]
    runtimes: list[dict[str, Any]]  # how each loaded version's forwards run, in the order of `loaded`
    versions: list[StoredVersion]
    damaged: list[Damaged]


@dataclass(frozen=True)
class History:
    model: str
    version: int
    iterations_per_epoch: int | None
    steps: dict[str, list[float]]  # one list per column of the version's report/history.csv
    quality: list[dict]


def catalogue(registry: ModelRegistry, name: str) -> Catalogue | None:
    """The store's versions of `name` (complete and damaged) and what of it is in memory; None if it has none.
    Reads the store: call it off the event loop."""
    listing = registry.listing(name)
    versions = listing.versions
    if not versions and not listing.damaged:
        return None
    serving = registry.serving().get(name)
    loaded = registry.loaded_models().get(name, {})
    return Catalogue(
        name=name,
        latest=versions[-1].version if versions else None,
        serving=serving.version if serving else None,
        loaded=sorted(loaded),
        runtimes=[{"version": n, **loaded[n].started.plan.describe()} for n in sorted(loaded)],
        versions=[StoredVersion(v.version, v is versions[-1], v.manifest) for v in versions],
        damaged=[_damaged(d, d.version in loaded and loaded[d.version].damage_in(listing) is d)
                 for d in listing.damaged],
    )


def _damaged(damaged: DamagedVersion, in_memory: bool) -> Damaged:
    what = "still served from the copy loaded before the damage" if in_memory else "not served"
    damage = damaged.damage
    return Damaged(damaged.version, damage.file, damage.problem, damage.expected, damage.found, in_memory,
                   f"{damaged.reason}; {what}. Restore the file from a copy or publish the model again; deleting the "
                   "version's directory withdraws it")


def training_history(registry: ModelRegistry, name: str, version: int | str, every: int = 1) -> History:
    """A version's training curves from its `report/history.csv` (every `every`-th step) and what `--eval-every`
    measured. Reads the store: call it off the event loop."""
    stored = registry.stored(name, version)
    try:
        with open(stored.path / REPORT_DIR / HISTORY_CSV, newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise NotFound(f"{name} v{stored.version} was published without a training history") from None
    columns = list(zip(*rows[1:][every - 1::every])) or [()] * len(rows[0])
    manifest = stored.manifest
    return History(model=name, version=stored.version,
                   iterations_per_epoch=manifest.iterations // max(1, manifest.epochs or 1)
                   if manifest.iterations else None,
                   steps={head: [float(v) for v in values] for head, values in zip(rows[0], columns)},
                   quality=manifest.quality_history or [])
