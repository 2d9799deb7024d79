"""`python -m shared [MODEL_DIR]`: list the store's complete versions; exit 1 when it has none."""
from __future__ import annotations

import os
import sys

from shared.store import Store


def main(argv: list[str]) -> int:
    root = argv[0] if argv else os.environ.get("MODEL_DIR", "./models")
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
    raise SystemExit(main(sys.argv[1:]))
