"""`python -m shared [list|verify] [MODEL_DIR]`: the store's versions, complete or damaged."""
from __future__ import annotations

import argparse
import os
import sys
import time

from shared.errors import command
from shared.store import DamagedVersion, Store, sha256_file

PROG = "python -m shared"
COMPLETE, EMPTY, DAMAGED = 0, 1, 3  # 2 is a usage error, as for every latentlab command
EXIT_CODES = f"""exit status:
  {COMPLETE}  every version is complete (and there is one at least)
  {EMPTY}  no complete version, and nothing damaged (an empty store)
  2  usage error
  {DAMAGED}  a version is damaged: a file is missing or no longer matches the size or sha256 its manifest lists
     (restore it from a copy or publish again; deleting the version's directory withdraws it)"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES,
        usage=f"{PROG} [list|verify] [MODEL_DIR]",
        description="List the model store's versions, complete or damaged. Both modes hash every file a manifest "
                    "lists, as the service does before it loads a version; `verify` also prints every file with "
                    "its verdict and how long the hashing took.")
    p.add_argument("mode", nargs="?", choices=("list", "verify"), default="list", metavar="list|verify",
                   help="list (the default): one line per version; verify: one line per file")
    p.add_argument("store", nargs="?", metavar="MODEL_DIR", default=os.environ.get("MODEL_DIR", "./models"),
                   help="model store directory (env MODEL_DIR, else ./models)")
    if argv and argv[0] not in ("list", "verify") and not argv[0].startswith("-"):
        argv = ["list", *argv]  # `python -m shared MODEL_DIR`
    return p.parse_args(argv)


def verify_files(item, whole: bool) -> tuple[int, int]:
    """Print every file of a version with its verdict; (files, bytes). A whole version's files were all just
    hashed by the listing; only a damaged one's are looked at again, to say which fail."""
    files = size = 0
    for rel, entry in item.manifest.files.items():
        ok = whole
        if not whole:
            path = item.path / rel
            try:
                ok = path.stat().st_size == entry.size and sha256_file(path) == entry.sha256
            except OSError:
                ok = False
        files, size = files + 1, size + entry.size
        print(f"    {'ok     ' if ok else 'DAMAGED'} {rel}")
    return files, size


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    store = Store(args.store)
    complete = damaged = 0
    hashed = [0, 0]
    started = time.perf_counter()
    for name in store.model_names():
        listing = store.listing(name)
        rows = sorted([*((v.version, v) for v in listing.versions), *((d.version, d) for d in listing.damaged)],
                      key=lambda row: row[0])
        for number, item in rows:
            m = item.manifest
            what = f"{m.architecture:<6} {'?' if m.epochs is None else m.epochs:>4} epochs  {m.created_at}" if m else ""
            if isinstance(item, DamagedVersion):
                damaged += 1
                print(f"{name:<16} v{number:<4} DAMAGED  {item.reason}  {item.path}")
            else:
                complete += 1
                print(f"{name:<16} v{number:<4} {what}  {item.path}")
            if args.mode == "verify" and m is not None:
                files, size = verify_files(item, not isinstance(item, DamagedVersion))
                hashed = [hashed[0] + files, hashed[1] + size]
    if args.mode == "verify":
        print(f"hashed {hashed[0]} files, {hashed[1] / 1e6:.1f} MB, in {time.perf_counter() - started:.1f}s")
    if damaged:
        print(f"{args.store}: {damaged} damaged version(s): a file is missing or no longer matches its manifest. "
              "Restore it from a copy, or publish the model again; deleting the version's directory withdraws it. "
              "A service that had it loaded keeps serving it from memory.", file=sys.stderr)
        return DAMAGED
    if not complete:
        print(f"{args.store}: no complete model version", file=sys.stderr)
        return EMPTY
    return COMPLETE


if __name__ == "__main__":
    raise SystemExit(main())
