"""Which model versions are in memory: the latest of each model, plus an LRU of pinned older ones.

`refresh()` (run every RELOAD_INTERVAL seconds, in a worker thread) loads any newer complete
version, warms it up, and only then swaps it in; requests in flight keep the module they already
hold. A version that fails to load is logged and skipped until its files change, and what was
serving keeps serving. A loaded version whose files are damaged on disk (a bad disk, a bad copy) keeps being
served from memory and is reported as damaged; one deleted from the store is withdrawn. The registry tells an observer (the service's telemetry) what it loads and
holds, always after releasing its lock, so a slow observer never stalls a lookup.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import torch

from shared.imaging.latents import LatentLayout
from shared.store import DamagedVersion, Listing, NotFound, Store, Version

if TYPE_CHECKING:
    from service.engine.engine import Started

log = logging.getLogger("latentlab.registry")


class RegistryObserver(Protocol):
    def model_loaded(self, name: str, ok: bool) -> None: ...

    def version_held(self, name: str, version: int, role: str, precision: str) -> None: ...

    def version_released(self, name: str, version: int, role: str, precision: str) -> None: ...

    def versions_damaged(self, name: str, count: int) -> None: ...


class Engine(Protocol):
    def start(self, version: Version) -> "Started":
        """Load, warm up and check the version's generator (ValueError if it is not what its manifest
        says); its batcher and semantic directions."""


@dataclass(frozen=True)
class LoadedModel:
    stored: Version  # what the store holds: name, version, manifest
    device: torch.device
    started: Started  # what the engine prepared: its batcher, directions, classes, classifier, encoder

    # read on every request: each is looked up once, then a plain attribute
    name = functools.cached_property(lambda self: self.stored.name)
    version = functools.cached_property(lambda self: self.stored.version)
    latent_dim = functools.cached_property(lambda self: self.stored.latent_dim)
    image_shape = functools.cached_property(lambda self: self.stored.image_shape)
    sha256 = functools.cached_property(lambda self: self.stored.manifest.generator_sha256)
    batcher = functools.cached_property(lambda self: self.started.batcher)  # where its requests queue for a forward
    directions = functools.cached_property(lambda self: self.started.directions)  # SeFa directions, found at load
    semantics = functools.cached_property(lambda self: self.started.semantics)  # its latent space's classes
    classifier = functools.cached_property(lambda self: self.started.classifier)  # the classifier that found them
    precision = property(lambda self: self.started.plan.precision)  # what its forwards compute in (fp32, bf16, both)

    @functools.cached_property
    def layout(self) -> LatentLayout:
        """z, then the classes it is given: read from the manifest once, not on every request."""
        return LatentLayout.of(self.stored.manifest)

    def is_in(self, listing: Listing) -> bool:
        """Whether the store still holds this version as it was loaded: these very weights under this number (a
        store edited by hand may not), and no file added since (`python -m trainer.evaluate` adds classes.json);
        or holds it damaged, its manifest unchanged or unreadable (then the copy in memory is the good one)."""
        files = self.stored.manifest.files
        return (any(v.version == self.version and v.manifest.files == files for v in listing.versions)
                or self.damage_in(listing) is not None)

    def damage_in(self, listing: Listing) -> DamagedVersion | None:
        """This version's damage on disk, if the listing has it damaged as it was published."""
        return next((d for d in listing.damaged if d.version == self.version
                     and (d.manifest is None or d.manifest.files == self.stored.manifest.files)), None)


class ModelRegistry:
    def __init__(self, store: Store, device: torch.device, engine: Engine, observer: RegistryObserver,
                 pinned_cache_size: int = 4):
        self._store = store
        self.device = device
        self._engine = engine
        self._observer = observer
        self.pinned_cache_size = pinned_cache_size
        self._latest: dict[str, LoadedModel] = {}
        self._pinned: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._failed: dict[tuple[str, int], str] = {}  # version -> sha256 of the generator that failed
        self._damaged: dict[str, list[DamagedVersion]] = {}  # by model: versions the store holds damaged
        self._lock = threading.Lock()  # guards the dicts; held only for lookups and swaps
        self._load_lock = threading.RLock()  # one load at a time: loads are heavy, lookups must not wait
        self.last_refresh: float | None = None  # when the store was last read; None: not yet
        self.last_error: str | None = None  # why the last load failed, until one succeeds

    # ------------------------------------------------------------------ state
    @property
    def store_root(self) -> Path:
        return self._store.root

    @property
    def ready(self) -> bool:
        return bool(self._latest)

    def serving(self) -> dict[str, LoadedModel]:
        with self._lock:
            return dict(self._latest)

    def loaded_versions(self) -> dict[str, list[int]]:
        return {name: sorted(models) for name, models in self.loaded_models().items()}

    def loaded_models(self) -> dict[str, dict[int, LoadedModel]]:
        """Every version in memory, by model name and version number."""
        with self._lock:
            out: dict[str, dict[int, LoadedModel]] = {}
            for m in [*self._latest.values(), *self._pinned.values()]:
                out.setdefault(m.name, {})[m.version] = m
        return out

    # ------------------------------------------------------------------ what the store holds
    def model_names(self) -> list[str]:
        return self._store.model_names()

    def versions(self, name: str) -> list[Version]:
        return self._store.versions(name)

    def listing(self, name: str) -> Listing:
        return self._store.listing(name)

    def stored(self, name: str, version: int | str = "latest") -> Version:
        """A complete version in the store, loaded or not; NotFound says what the store has instead."""
        return self._store.get(name, version)

    def damaged(self) -> list[DamagedVersion]:
        """Every version the store held damaged at the last look, by model name and number."""
        with self._lock:
            return [d for name in sorted(self._damaged) for d in self._damaged[name]]

    # ------------------------------------------------------------------ loading
    def refresh(self) -> None:
        """Load the newest complete version of every model if it is newer than the one serving."""
        for name in self.model_names():
            try:
                self.refresh_model(name)
            except OSError as e:  # a store on a flaky volume: try again next time
                log.warning("cannot list %s: %s", name, e)
        self.last_refresh = time.time()

    def refresh_model(self, name: str) -> LoadedModel | None:
        """Make the newest loadable version of `name` its latest; returns what serves it now.

        What is in memory is known by number and generator sha256: a version that is gone from the store,
        or whose number now names other weights, is dropped, never served under that number."""
        with self._load_lock:  # one model change at a time; lookups of loaded models never wait on this
            listing = self._store.listing(name)
            self._locked(lambda events: self._forget_stale(name, listing, events))
            self._note_damage(name, listing.damaged)
            for version in reversed(listing.versions):
                current = self._latest.get(name)
                if current is not None and current.version >= version.version:
                    break
                loaded = self._load(version)
                if loaded is not None:
                    self._promote(loaded)
                    break
            return self._latest.get(name)

    def loaded(self, name: str, version: int | str = "latest") -> LoadedModel | None:
        """The model if it is in memory now, else None; never touches the store (cheap enough for the event loop)."""
        with self._lock:
            latest = self._latest.get(name)
            if latest is not None and (version == "latest" or latest.version == int(version)):
                return latest
            key = (name, int(version)) if version != "latest" else None
            if key in self._pinned:
                self._pinned.move_to_end(key)
                return self._pinned[key]
        return None

    def get(self, name: str, version: int | str = "latest") -> LoadedModel:
        """The loaded model for a request, loading it first if the store has it. Raises NotFound."""
        found = self.loaded(name, version)
        if found is not None:
            return found
        with self._lock:
            latest = self._latest.get(name)
            key = (name, int(version)) if version != "latest" else None
        if latest is None or (key is not None and key[1] > latest.version):
            # in the store but not loaded yet (published since the last poll, or the first poll is still
            # loading other models): load it now as latest rather than answer 404
            latest = self.refresh_model(name)
            if latest is None:
                self._store.get(name, version)  # raises NotFound naming what the store has
                raise NotFound(f"model {name!r} could not be loaded (see the service log)")
            if key is None or latest.version == key[1]:
                return latest
        stored = self._store.get(name, key[1])  # NotFound if absent, incomplete or tampered
        loaded = self._load(stored)
        if loaded is None:
            raise NotFound(f"model {name!r} version {key[1]} exists but could not be loaded (see the service log)")
        self._locked(lambda events: self._remember_pinned(loaded, events))
        return loaded

    def _load(self, version: Version) -> LoadedModel | None:
        """Load and warm up; None if it fails now or failed before with the same files (no retry storm)."""
        with self._load_lock:
            if self._failed.get((version.name, version.version)) == version.manifest.generator_sha256:
                return None
            started = time.perf_counter()
            try:
                prepared = self._engine.start(version)
                loaded = LoadedModel(version, self.device, prepared)
            except Exception as e:  # a broken file must never take the service down
                self._failed[(version.name, version.version)] = version.manifest.generator_sha256
                self._observer.model_loaded(version.name, ok=False)
                first_line = str(e).splitlines()[0] if str(e) else ""
                self.last_error = f"{version.name} v{version.version}: {type(e).__name__}: {first_line}"
                log.error("skipping %s v%d: it failed to load: %s", version.name, version.version, self.last_error)
                return None
            self._observer.model_loaded(version.name, ok=True)
            log.info("loaded %s v%d on %s in %.2fs", version.name, version.version, self.device,
                     time.perf_counter() - started)
            return loaded

    # ------------------------------------------------------------------ swaps, under the lock
    def _locked(self, change: Callable[[list[tuple]], None]) -> None:
        """Run `change` under the lock; it queues observer events, which are sent after the lock is released."""
        events: list[tuple] = []
        with self._lock:
            change(events)
        for method, *args in events:
            getattr(self._observer, method)(*args)

    def _promote(self, loaded: LoadedModel) -> None:
        def swap(events: list[tuple]) -> None:
            previous = self._latest.get(loaded.name)
            self._latest[loaded.name] = loaded
            events.append(("version_held", loaded.name, loaded.version, "latest", loaded.precision))
            if previous is not None:
                events.append(("version_released", previous.name, previous.version, "latest", previous.precision))
                self._remember_pinned(previous, events)  # requests pinned to it need no reload

        self._locked(swap)
        self.last_error = None
        log.info("serving %s v%d as latest", loaded.name, loaded.version)

    def _note_damage(self, name: str, damaged: list[DamagedVersion]) -> None:
        """Remember what the store holds damaged; say so once when a version becomes damaged or is mended."""
        with self._lock:
            before = {d.version: d for d in self._damaged.get(name, ())}
            self._damaged[name] = damaged
            served = {m.version for m in [*self._latest.values(), *self._pinned.values()] if m.name == name}
        for d in damaged:
            if d.version not in before or before[d.version].damage != d.damage:
                memory = ("still served from memory" if d.version in served else "not loaded")
                log.error("%s v%d is damaged on disk: %s (%s). Restore the file from a copy or publish the model "
                          "again; deleting %s withdraws the version", name, d.version, d.reason, memory, d.path)
        for number in before.keys() - {d.version for d in damaged}:
            log.info("%s v%d is no longer damaged on disk", name, number)
        self._observer.versions_damaged(name, len(damaged))

    def _forget_stale(self, name: str, listing: Listing, events: list[tuple]) -> None:
        """Drop (caller holds the lock) what of `name` the store no longer holds as it was loaded (damaged on disk
        counts as held: the copy in memory is the good one)."""
        latest = self._latest.get(name)
        if latest is not None and not latest.is_in(listing):
            del self._latest[name]
            events.append(("version_released", name, latest.version, "latest", latest.precision))
            log.warning("%s v%d is gone from the store or changed: no longer served as it was", name, latest.version)
        for key in [k for k, m in self._pinned.items() if k[0] == name and not m.is_in(listing)]:
            gone = self._pinned.pop(key)
            events.append(("version_released", name, key[1], "pinned", gone.precision))

    def _remember_pinned(self, model: LoadedModel, events: list[tuple]) -> None:
        """Add to the LRU of older versions (caller holds the lock); evict beyond its size."""
        key = (model.name, model.version)
        self._pinned[key] = model
        self._pinned.move_to_end(key)
        events.append(("version_held", model.name, model.version, "pinned", model.precision))
        while len(self._pinned) > self.pinned_cache_size:
            (name, version), evicted = self._pinned.popitem(last=False)
            events.append(("version_released", name, version, "pinned", evicted.precision))
            log.info("evicted %s v%d from memory", name, version)
