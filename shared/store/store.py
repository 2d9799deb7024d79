"""The model store: `<root>/<name>/v<N>/` directories, published atomically, verified on listing.

A version directory holds `generator.pt`, `discriminator.pt` (TorchScript), `report/` and
`manifest.json`; the manifest lists every other file with its size and sha256. Publishing stages
everything in a hidden directory beside the versions (same filesystem), claims the next number with
`mkdir` (atomic: two publishers never get the same one) and renames the staged directory over the
empty claim (atomic: a reader sees no version or a whole one). Listings skip anything hidden,
anything without a valid manifest and anything whose files do not match their hashes.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from pydantic import ValidationError

from shared.store.atomic import atomic_write
from shared.store.layout import (
    DISCRIMINATOR,
    GENERATOR,
    MANIFEST,
    NAME_RE,
    VERSION_DIR_RE,
    NotFound,
    StoreError,
    validate_name,
)
from shared.store.manifest import STORE_FIELDS, FileEntry, Manifest, ManifestDraft


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def file_entries(directory: Path) -> dict[str, FileEntry]:
    """Size and sha256 of every file under `directory` except the manifest, by relative POSIX path."""
    entries = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel != MANIFEST:
            entries[rel] = FileEntry(size=path.stat().st_size, sha256=sha256_file(path))
    return entries


def _write_manifest(path: Path, manifest: Manifest) -> None:
    with atomic_write(path, "w") as f:
        f.write(manifest.to_json())


def _validation_message(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'manifest'}: {err['msg']}" for err in e.errors())


@dataclass(frozen=True)
class Version:
    """A complete, verified version in the store."""

    name: str
    version: int
    path: Path
    manifest: Manifest

    @property
    def generator_path(self) -> Path:
        return self.path / GENERATOR

    @property
    def discriminator_path(self) -> Path:
        return self.path / DISCRIMINATOR

    @property
    def latent_dim(self) -> int:
        return self.manifest.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.manifest.image_shape


class Store:
    """A model store rooted at a directory. Safe to share between threads."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        # Hashing a 14 MB generator on every poll is wasteful: remember verdicts keyed on what
        # `stat` says about every file, so any change to a file forces a re-hash.
        self._verified: dict[Path, tuple[Any, Manifest | None]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reading
    def model_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.fullmatch(p.name))

    def versions(self, name: str) -> list[Version]:
        """Every complete, hash-verified version of `name`, oldest first."""
        model_dir = self.root / validate_name(name)
        if not model_dir.is_dir():
            return []
        found = []
        for entry in model_dir.iterdir():
            m = VERSION_DIR_RE.fullmatch(entry.name)
            if m and entry.is_dir():
                manifest = self._verified_manifest(entry)
                if manifest is not None and manifest.version == int(m.group(1)) and manifest.name == name:
                    found.append(Version(name, manifest.version, entry, manifest))
        return sorted(found, key=lambda v: v.version)

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

    def _verified_manifest(self, version_dir: Path) -> Manifest | None:
        """The manifest if it is valid and every file it lists exists with its size and sha256, else None."""
        try:
            manifest_path = version_dir / MANIFEST
            manifest = Manifest.model_validate_json(manifest_path.read_bytes())
            stamp = [(manifest_path.stat().st_mtime_ns, manifest_path.stat().st_size)]
            for rel, entry in manifest.files.items():
                st = (version_dir / rel).stat()
                if st.st_size != entry.size:
                    return None
                stamp.append((rel, st.st_mtime_ns, st.st_size, st.st_ino))
            stamp = tuple(stamp)
        except (OSError, ValidationError):
            return None
        with self._lock:
            cached = self._verified.get(version_dir)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            ok = all(sha256_file(version_dir / rel) == entry.sha256 for rel, entry in manifest.files.items())
        except OSError:
            ok = False
        verdict = manifest if ok and GENERATOR in manifest.files else None
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

    def publish(self, name: str, staged: Path, draft: ManifestDraft | Mapping[str, Any]) -> Version:
        """Validate the draft, hash the staged files, write the manifest, move the directory in as the
        next version. A draft missing required fields is refused before any number is claimed."""
        model_dir = self.root / validate_name(name)
        staged = Path(staged)
        if staged.parent.resolve() != model_dir.resolve():
            raise StoreError(f"staged directory {staged} must come from Store.staging({name!r})")
        try:
            stated = ManifestDraft.model_validate(draft if isinstance(draft, Mapping) else draft.model_dump(exclude_unset=True))
        except ValidationError as e:
            raise StoreError(f"refusing to publish {name}: its manifest is invalid: {_validation_message(e)}") from None
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
            manifest = Manifest(**stated.model_dump(exclude=STORE_FIELDS, exclude_unset=True), name=name, version=number,
                                created_at=utc_now_iso(), files=files)
            _write_manifest(staged / MANIFEST, manifest)
            try:
                os.replace(staged, target)  # replaces the empty claim in one step
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue  # someone wrote into our claim by hand; take the next number
                raise
            os.chmod(target, 0o755)  # mkdtemp made it 0700; the service may run as another user
            return Version(name, number, target, manifest)

    def update_manifest(self, version: Version, **fields: Any) -> Version:
        """Add or replace stated fields (metrics, say) of a published version's manifest, atomically.

        Only the manifest is rewritten, so the hashes of the other files stay valid."""
        fixed = STORE_FIELDS & fields.keys()
        if fixed:
            raise StoreError(f"manifest fields {sorted(fixed)} cannot be changed after publishing")
        current = Manifest.model_validate_json((version.path / MANIFEST).read_bytes())
        try:
            manifest = Manifest.model_validate({**current.model_dump(exclude_unset=True), **fields})
        except ValidationError as e:
            raise StoreError(f"invalid manifest fields for {version.name} v{version.version}: "
                             f"{_validation_message(e)}") from None
        _write_manifest(version.path / MANIFEST, manifest)
        return Version(version.name, version.version, version.path, manifest)

    @staticmethod
    def _next_number(model_dir: Path) -> int:
        numbers = [int(m.group(1)) for p in model_dir.iterdir() if (m := VERSION_DIR_RE.fullmatch(p.name))]
        return max(numbers, default=0) + 1
