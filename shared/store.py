"""The model store: `<root>/<name>/v<N>/` directories, published atomically, verified on listing.

A version directory holds `generator.pt`, `discriminator.pt` (TorchScript), `report/` and
`manifest.json`; the manifest lists every other file with its size and sha256. Publishing stages
everything in a hidden directory beside the versions (same filesystem), claims the next number with
`mkdir` (atomic: two publishers never get the same one) and renames the staged directory over the
empty claim (atomic: a reader sees no version or a whole one). Listings skip anything hidden,
anything without a manifest and anything whose files do not match their hashes.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from shared.atomic import atomic_write

MANIFEST = "manifest.json"
GENERATOR = "generator.pt"
DISCRIMINATOR = "discriminator.pt"
REPORT_DIR = "report"
FORMAT_VERSION = 1

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
_VERSION_RE = re.compile(r"^v([1-9][0-9]{0,8})$")


class StoreError(Exception):
    """Base class for store problems a caller can report to a user."""


class InvalidName(StoreError, ValueError):
    pass


class NotFound(StoreError, LookupError):
    pass


def validate_name(name: str) -> str:
    """Return `name` if it is a valid model name, else raise InvalidName (no path tricks possible)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidName(
            f"invalid model name {name!r}: use 1-64 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_json_atomic(path: Path, data: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def file_entries(directory: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under `directory` except the manifest, by relative POSIX path."""
    entries = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel != MANIFEST:
            entries[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return entries


@dataclass(frozen=True)
class Version:
    """A complete, verified version in the store."""

    name: str
    version: int
    path: Path
    manifest: dict[str, Any]

    @property
    def generator_path(self) -> Path:
        return self.path / GENERATOR

    @property
    def discriminator_path(self) -> Path:
        return self.path / DISCRIMINATOR

    @property
    def latent_dim(self) -> int:
        return int(self.manifest["latent_dim"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.manifest["image_shape"]
        return (int(c), int(h), int(w))


class Store:
    """A model store rooted at a directory. Safe to share between threads."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        # Hashing a 14 MB generator on every poll is wasteful: remember verdicts keyed on what
        # `stat` says about every file, so any change to a file forces a re-hash.
        self._verified: dict[Path, tuple[Any, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reading
    def model_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME_RE.fullmatch(p.name))

    def versions(self, name: str) -> list[Version]:
        """Every complete, hash-verified version of `name`, oldest first."""
        model_dir = self.root / validate_name(name)
        if not model_dir.is_dir():
            return []
        found = []
        for entry in model_dir.iterdir():
            m = _VERSION_RE.fullmatch(entry.name)
            if m and entry.is_dir():
                manifest = self._verified_manifest(entry)
                if manifest is not None and manifest.get("version") == int(m.group(1)) and manifest.get("name") == name:
                    found.append(Version(name, int(m.group(1)), entry, manifest))
        return sorted(found, key=lambda v: v.version)

    def latest(self, name: str) -> Version | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def get(self, name: str, version: int | str = "latest") -> Version:
        """The given version (an int, or "latest"); raises NotFound if it is not complete and verified."""
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"no model named {name!r} in the store")
        if version == "latest":
            return versions[-1]
        for v in versions:
            if v.version == int(version):
                return v
        raise NotFound(f"model {name!r} has no version {version}; it has {', '.join(str(v.version) for v in versions)}")

    def _verified_manifest(self, version_dir: Path) -> dict[str, Any] | None:
        """The manifest if every file it lists exists with its size and sha256, else None."""
        try:
            manifest_path = version_dir / MANIFEST
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
            stamp = [(manifest_path.stat().st_mtime_ns, manifest_path.stat().st_size)]
            for rel, meta in files.items():
                st = (version_dir / rel).stat()
                if st.st_size != meta["size"]:
                    return None
                stamp.append((rel, st.st_mtime_ns, st.st_size, st.st_ino))
            stamp = tuple(stamp)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        with self._lock:
            cached = self._verified.get(version_dir)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            ok = all(sha256_file(version_dir / rel) == meta["sha256"] for rel, meta in files.items())
        except OSError:
            ok = False
        verdict = manifest if ok and GENERATOR in files else None
        with self._lock:
            self._verified[version_dir] = (stamp, verdict)
        return verdict

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        """A hidden directory beside `name`'s versions to build a version in; removed if not published."""
        model_dir = self.root / validate_name(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def publish(self, name: str, staged: Path, manifest: dict[str, Any]) -> Version:
        """Hash the staged files, write the manifest, and move the directory in as the next version."""
        model_dir = self.root / validate_name(name)
        staged = Path(staged)
        if staged.parent.resolve() != model_dir.resolve():
            raise StoreError(f"staged directory {staged} must come from Store.staging({name!r})")
        files = file_entries(staged)
        if GENERATOR not in files:
            raise StoreError(f"nothing to publish: {staged / GENERATOR} is missing")
        while True:
            number = self._next_number(model_dir)
            target = model_dir / f"v{number}"
            try:
                os.mkdir(target)  # the claim: exactly one publisher succeeds for each number
            except FileExistsError:
                continue
            full = {
                "format": FORMAT_VERSION,
                "name": name,
                "version": number,
                "created_at": utc_now_iso(),
                **{k: v for k, v in manifest.items() if k not in ("name", "version", "files")},
                "files": files,
            }
            write_json_atomic(staged / MANIFEST, full)
            try:
                os.replace(staged, target)  # replaces the empty claim in one step
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue  # someone wrote into our claim by hand; take the next number
                raise
            os.chmod(target, 0o755)  # mkdtemp made it 0700; the service may run as another user
            version = Version(name, number, target, full)
            return version

    def update_manifest(self, version: Version, **fields: Any) -> Version:
        """Add or replace top-level manifest fields (not name, version or files), atomically."""
        bad = {"name", "version", "files", "format"} & fields.keys()
        if bad:
            raise StoreError(f"manifest fields {sorted(bad)} cannot be changed after publishing")
        manifest = json.loads((version.path / MANIFEST).read_text())
        manifest.update(fields)
        write_json_atomic(version.path / MANIFEST, manifest)
        return Version(version.name, version.version, version.path, manifest)

    @staticmethod
    def _next_number(model_dir: Path) -> int:
        numbers = [int(m.group(1)) for p in model_dir.iterdir() if (m := _VERSION_RE.fullmatch(p.name))]
        return max(numbers, default=0) + 1
