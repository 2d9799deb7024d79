"""`python -m shared [MODEL_DIR]`: list the store's complete versions; exit 1 when it has none."""
from __future__ import annotations

import argparse
import os
import sys

from shared.errors import command
from shared.store import Store

PROG = "python -m shared"


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description="List the model store's complete, verified versions. "
                                                       "Exit 0 when there is one at least, 1 when there is none.")
    p.add_argument("store", nargs="?", default=os.environ.get("MODEL_DIR", "./models"),
                   help="model store directory (env MODEL_DIR)")
    root = p.parse_args(argv).store
    store = Store(root)
    found = 0
    for name in store.model_names():
        for v in store.versions(name):
            found += 1
            m = v.manifest
            epochs = "?" if m.epochs is None else m.epochs
            print(f"{name:<16} v{v.version:<4} {m.architecture:<6} {epochs:>4} epochs  {m.created_at}  {v.path}")
    if not found:
        print(f"{root}: no complete model version", file=sys.stderr)
    return 0 if found else 1


if __name__ == "__main__":
    raise SystemExit(main())
