"""The model store: `<root>/<name>/v<N>/` directories, published atomically, verified on listing.

A version directory holds `generator.pt`, `discriminator.pt` (TorchScript), `report/` and
`manifest.json`; the manifest lists every other file with its size and sha256. Publishing stages
everything in a hidden directory beside the versions (same filesystem); then, under the model's writer
lock, it raises the model's high-water mark (so a number is never handed out twice, even after its
version is deleted), claims that number with `mkdir`, and renames the staged directory over the empty
claim (atomic: a reader sees no version or a whole one). Whatever a killed publisher left behind is
removed by the next writer. Listings skip anything hidden and name, as damaged, any version whose manifest is
unreadable or whose files no longer match their sizes and hashes (a bad disk, a bad copy); readers take no lock.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from pydantic import ValidationError

from shared.store import locks
from shared.store.atomic import atomic_write, remove_leftovers, write_text_atomic
from shared.store.layout import (
    DISCRIMINATOR,
    GENERATOR,
    HIGH_WATER,
    LOCK_FILE,
    MANIFEST,
    NAME_RE,
    STAGING_PREFIX,
    VERSION_DIR_RE,
    NotFound,
    StoreError,
    StoreWriteFailed,
    generator_file,
    validate_name,
)
from shared.store.manifest import STORE_FIELDS, FileEntry, Manifest, ManifestDraft


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> tuple[int, int, int]:
    """What changes when a file is rewritten (atomically, so with a new inode) or touched."""
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


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


def _validation_message(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'manifest'}: {err['msg']}" for err in e.errors())


@dataclass(frozen=True)
class Damage:
    """Why a version directory is not a complete version: the first file that fails, what its manifest expects
    and what is there (None where there is nothing to compare)."""

    file: str
    problem: str  # "unreadable manifest", "missing", "unreadable", "size", "sha256"
    expected: str | None = None
    found: str | None = None

    def __str__(self) -> str:
        if self.problem in ("unreadable manifest", "unreadable"):
            return f"{self.file}: unreadable ({self.found})"
        if self.problem == "missing":
            return f"{self.file}: missing"
        if self.problem == "sha256":  # enough of each hash to tell them apart; /models gives them whole
            return f"{self.file}: sha256 {self.found[:16]}..., the manifest says {self.expected[:16]}..."
        return f"{self.file}: {self.problem} {self.found}, the manifest says {self.expected}"


@dataclass(frozen=True)
class DamagedVersion:
    """A version directory whose files no longer match its manifest: never served from disk, always named."""

    name: str
    version: int
    path: Path
    damage: Damage
    manifest: Manifest | None  # what it was published as, when the manifest itself still reads

    @property
    def reason(self) -> str:
        return str(self.damage)


Verdict = Manifest | tuple[Damage, Manifest | None] | None  # whole, damaged (and what it was), or not a version


@dataclass(frozen=True)
class Listing:
    """One model's version directories: the complete, verified ones and the damaged ones, oldest first."""

    versions: list["Version"]
    damaged: list[DamagedVersion]


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
        return self.listing(name).versions

    def listing(self, name: str) -> Listing:
        """Every version directory of `name`: complete and verified, or damaged (which file, and how).

        An empty directory is a number being claimed by a publisher (or left by a killed one): neither."""
        model_dir = self.root / validate_name(name)
        if not model_dir.is_dir():
            return Listing([], [])
        versions, damaged = [], []
        for entry in model_dir.iterdir():
            m = VERSION_DIR_RE.fullmatch(entry.name)
            if not (m and entry.is_dir()):
                continue
            number = int(m.group(1))
            verdict = self._verified_manifest(entry)
            if isinstance(verdict, Manifest):
                if verdict.version == number and verdict.name == name:
                    versions.append(Version(name, number, entry, verdict))
                else:
                    damaged.append(DamagedVersion(name, number, entry, Damage(
                        MANIFEST, "unreadable manifest", found=f"it names {verdict.name} v{verdict.version}"), verdict))
            elif verdict is not None:
                damaged.append(DamagedVersion(name, number, entry, verdict[0], verdict[1]))
        return Listing(sorted(versions, key=lambda v: v.version), sorted(damaged, key=lambda d: d.version))

    def damaged(self, name: str) -> list[DamagedVersion]:
        """The version directories of `name` whose files do not match their manifest, oldest first."""
        return self.listing(name).damaged

    def get(self, name: str, version: int | str = "latest") -> Version:
        """The given version (an int, or "latest"); raises NotFound if it is not complete and verified."""
        listing = self.listing(name)
        versions = listing.versions
        for damaged in listing.damaged:
            if version != "latest" and damaged.version == int(version):
                raise NotFound(f"model {name!r} version {version} is damaged ({damaged.reason}): restore the file or "
                               "publish again")
        if not versions:
            raise NotFound(f"no model named {name!r} with a complete version in the store")
        if version == "latest":
            return versions[-1]
        for v in versions:
            if v.version == int(version):
                return v
        raise NotFound(f"model {name!r} has no version {version}; it has {', '.join(str(v.version) for v in versions)}")

    def _verified_manifest(self, version_dir: Path, attempts: int = 8) -> Verdict:
        """The manifest if it is valid and every file it lists exists with its size and sha256; else what is
        damaged (and the manifest when it reads); None for an empty directory, or one gone meanwhile.

        Readers take no lock, and `add_files` may replace a listed file meanwhile (after taking it out of the
        manifest); a verdict counts only if the manifest is still the one it was reached with, else it is
        reached again, so a reader never takes a version for damaged because it was being added to."""
        for attempt in range(attempts):
            time.sleep(0.001 * attempt)  # being rewritten: let the writer finish (no pause on the first look)
            manifest_path = version_dir / MANIFEST
            try:
                before = _stamp(manifest_path)
            except FileNotFoundError:
                break
            except OSError as e:
                return Damage(MANIFEST, "unreadable manifest", found=e.strerror or str(e)), None
            verdict = self._verify_once(version_dir)
            try:
                if _stamp(manifest_path) == before:
                    return verdict
            except OSError:
                break
        # no manifest (or it kept changing): a claim being made, a directory being deleted, or damage
        try:
            empty = not any(version_dir.iterdir())
        except OSError:
            return None  # gone
        return None if empty else (Damage(MANIFEST, "missing"), None)

    def _verify_once(self, version_dir: Path) -> Verdict:
        try:
            manifest_path = version_dir / MANIFEST
            manifest = Manifest.model_validate_json(manifest_path.read_bytes())
        except ValidationError as e:
            return Damage(MANIFEST, "unreadable manifest", found=_validation_message(e)[:200]), None
        except OSError as e:
            return Damage(MANIFEST, "unreadable manifest", found=e.strerror or str(e)), None
        if generator_file(manifest.files) is None:
            return Damage(GENERATOR, "missing"), manifest
        try:
            stamp = [_stamp(manifest_path)]
            for rel, entry in manifest.files.items():
                try:
                    st = (version_dir / rel).stat()
                except FileNotFoundError:
                    return Damage(rel, "missing"), manifest
                if st.st_size != entry.size:
                    return Damage(rel, "size", f"{entry.size} bytes", f"{st.st_size} bytes"), manifest
                stamp.append((rel, st.st_mtime_ns, st.st_size, st.st_ino))
            stamp = tuple(stamp)
        except OSError as e:
            return Damage(MANIFEST, "unreadable manifest", found=e.strerror or str(e)), manifest
        with self._lock:
            cached = self._verified.get(version_dir)
        if cached and cached[0] == stamp:
            return cached[1]
        verdict: Verdict = manifest
        for rel, entry in manifest.files.items():
            try:
                found = sha256_file(version_dir / rel)
            except OSError as e:
                verdict = Damage(rel, "unreadable", entry.sha256, e.strerror or str(e)), manifest
                break
            if found != entry.sha256:
                verdict = Damage(rel, "sha256", entry.sha256, found), manifest
                break
        with self._lock:
            self._verified[version_dir] = (stamp, verdict)
        return verdict

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        """A hidden directory beside `name`'s versions to build a version in; removed if not published.

        It is held (`locks.hold`) while in use, so that the next publisher can tell it from the leftover of
        a killed one. An OSError inside the block (a full disk) becomes a one-line StoreWriteFailed."""
        model_dir = self.root / validate_name(name)
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            with self._writing(model_dir):
                path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
                held = locks.hold(path)
        except OSError as e:
            raise self._write_failed(name, e) from e
        try:
            yield path
        except OSError as e:
            raise self._write_failed(name, e) from e
        finally:
            os.close(held)
            shutil.rmtree(path, ignore_errors=True)

    def publish(self, name: str, staged: Path, draft: ManifestDraft | Mapping[str, Any]) -> Version:
        """Validate the draft, hash the staged files, then, holding the model's lock: raise its high-water
        mark, claim the next number, write the manifest, and move the directory in as that version. A
        draft missing required fields is refused before any number is claimed."""
        model_dir = self.root / validate_name(name)
        staged = Path(staged)
        if staged.parent.resolve() != model_dir.resolve():
            raise StoreError(f"staged directory {staged} must come from Store.staging({name!r})")
        try:
            stated = ManifestDraft.model_validate(draft if isinstance(draft, Mapping) else draft.model_dump(exclude_unset=True))
        except ValidationError as e:
            raise StoreError(f"refusing to publish {name}: its manifest is invalid: {_validation_message(e)}") from None
        files = file_entries(staged)
        if generator_file(files) is None:
            raise StoreError(f"nothing to publish: {staged / GENERATOR} is missing")
        with self._writing(model_dir):
            while True:
                number = max([self.high_water(name), *self._numbers(model_dir)]) + 1
                # first the mark, then the claim: a number is spent even if we die right after
                write_text_atomic(model_dir / HIGH_WATER, f"{number}\n")
                target = model_dir / f"v{number}"
                try:
                    os.mkdir(target)
                except FileExistsError:  # a directory made by hand: skip its number
                    continue
                manifest = Manifest(**stated.model_dump(exclude=STORE_FIELDS, exclude_unset=True), name=name,
                                    version=number, created_at=utc_now_iso(), files=files)
                write_text_atomic(staged / MANIFEST, manifest.to_json())
                try:
                    os.replace(staged, target)  # replaces the empty claim in one step
                except OSError as e:
                    if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        continue  # someone wrote into our claim by hand; take the next number
                    raise
                os.chmod(target, 0o755)  # mkdtemp made it 0700; the service may run as another user
                return Version(name, number, target, manifest)

    def high_water(self, name: str) -> int:
        """The highest version number ever handed out for `name` (0: none), deleted versions included."""
        try:
            return int((self.root / validate_name(name) / HIGH_WATER).read_text())
        except (FileNotFoundError, ValueError):
            return 0

    @contextlib.contextmanager
    def _writing(self, model_dir: Path) -> Iterator[None]:
        """The model's writer lock, with what killed writers left behind removed first: nobody alive is
        writing while we hold it, apart from stagings, whose owners hold them."""
        with locks.exclusive(model_dir / LOCK_FILE):
            for entry in model_dir.iterdir():
                if entry.name.startswith(STAGING_PREFIX) and entry.is_dir() and locks.abandoned(entry):
                    shutil.rmtree(entry, ignore_errors=True)
                elif VERSION_DIR_RE.fullmatch(entry.name) and entry.is_dir():
                    with contextlib.suppress(OSError):
                        entry.rmdir()  # only an empty claim of a publisher killed before its rename goes
                    remove_leftovers(entry / MANIFEST)
            remove_leftovers(model_dir / HIGH_WATER)
            yield

    def _write_failed(self, name: str, e: OSError) -> StoreWriteFailed:
        return StoreWriteFailed(f"could not publish {name} to {self.root}: {e.strerror or e}"
                                f"{f' ({e.filename})' if e.filename else ''}; nothing was published and the store "
                                "is as it was")

    def update_manifest(self, version: Version, **fields: Any) -> Version:
        """Add or replace stated fields (metrics, say) of a published version's manifest, atomically.

        Only the manifest is rewritten, so the hashes of the other files stay valid."""
        fixed = STORE_FIELDS & fields.keys()
        if fixed:
            raise StoreError(f"manifest fields {sorted(fixed)} cannot be changed after publishing")
        with self._writing(version.path.parent):
            current = Manifest.model_validate_json((version.path / MANIFEST).read_bytes())
            try:
                manifest = Manifest.model_validate({**current.model_dump(exclude_unset=True), **fields})
            except ValidationError as e:
                raise StoreError(f"invalid manifest fields for {version.name} v{version.version}: "
                                 f"{_validation_message(e)}") from None
            try:
                write_text_atomic(version.path / MANIFEST, manifest.to_json())
            except OSError as e:
                raise self._write_failed(version.name, e) from e
        return Version(version.name, version.version, version.path, manifest)

    def add_files(self, version: Version, files: Mapping[str, bytes]) -> Version:
        """Add files (or replace added ones) in a published version, atomically for every reader.

        Under the model's writer lock: a file being replaced first leaves the manifest, each file is then
        written beside it (temporary file, rename), and the manifest lists them with their hashes at the
        end; a reader sees the version without the files or with them, never a listed file that fails its
        hash. The generator and the discriminator cannot be replaced: they are what the version is."""
        fixed = {GENERATOR, DISCRIMINATOR, MANIFEST} & files.keys()  # (an encoder may be added to an older version)
        if fixed:
            raise StoreError(f"{sorted(fixed)} of {version.name} v{version.version} cannot be replaced: publish a "
                             "new version instead")
        with self._writing(version.path.parent):
            current = Manifest.model_validate_json((version.path / MANIFEST).read_bytes())
            try:
                if files.keys() & current.files.keys():
                    kept = {k: v for k, v in current.files.items() if k not in files}
                    write_text_atomic(version.path / MANIFEST, current.model_copy(update={"files": kept}).to_json())
                entries = dict(current.files)
                for rel, data in files.items():
                    path = version.path / rel
                    remove_leftovers(path)
                    with atomic_write(path) as f:
                        f.write(data)
                    entries[rel] = FileEntry(size=len(data), sha256=hashlib.sha256(data).hexdigest())
                manifest = current.model_copy(update={"files": dict(sorted(entries.items()))})
                write_text_atomic(version.path / MANIFEST, manifest.to_json())
            except OSError as e:
                raise self._write_failed(version.name, e) from e
        return Version(version.name, version.version, version.path, manifest)

    @staticmethod
    def _numbers(model_dir: Path) -> list[int]:
        return [int(m.group(1)) for p in model_dir.iterdir() if (m := VERSION_DIR_RE.fullmatch(p.name))]
