"""Memory under a soak: the service's RSS across many requests and many hot-reloaded versions.

Copies one model's latest version into a temporary store, starts `python -m service` on it, then
repeatedly publishes a new version (the same files, through shared.store) while clients request
the latest and older pinned versions. Prints the service's RSS after every round: with the latest
version plus an LRU of pinned ones in memory, it should level off, not grow with every reload.

    python benchmarks/soak.py --store ./models --model dcgan --rounds 30
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from servers import start_service, stop  # noqa: E402  (this folder is on sys.path when run as a script)

from shared.store import MANIFEST, ManifestDraft, Store, Version  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def republish(store: Store, source: Version) -> int:
    """Publish `source`'s files again as the next version of its model in `store`."""
    with store.staging(source.name) as stage:
        for item in source.path.iterdir():
            if item.name != MANIFEST:
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, stage / item.name)
        draft = ManifestDraft.model_validate(source.manifest.model_dump(exclude={"metrics"}))
        return store.publish(source.name, stage, draft).version


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default="./models")
    p.add_argument("--model", default="gan")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--requests", type=int, default=40, help="requests per round")
    p.add_argument("--port", type=int, default=8766)
    args = p.parse_args()

    source = Store(args.store).get(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        republish(store, source)
        proc = start_service(tmp, args.port, RELOAD_INTERVAL="0.2", PINNED_CACHE_SIZE="2")
        url = f"http://127.0.0.1:{args.port}"
        try:
            client = httpx.Client(base_url=url, timeout=60)
            print(f"{'round':>5} {'latest':>6} {'RSS MB':>8} {'errors':>6}")
            errors, first = 0, None
            for round_ in range(1, args.rounds + 1):
                latest = republish(store, source)

                def one(i: int) -> int:
                    version = "latest" if i % 2 else random.randint(1, latest)
                    body = {"model": args.model, "version": version, "seed": i, "count": 64}
                    return client.post("/generate", json=body).status_code

                with ThreadPoolExecutor(4) as pool:
                    errors += sum(code != 200 for code in pool.map(one, range(args.requests)))
                rss = rss_mb(proc.pid)
                first = first or rss
                print(f"{round_:>5} {latest:>6} {rss:>8.1f} {errors:>6}", flush=True)
            print(f"RSS after round 1: {first:.1f} MB; after round {args.rounds}: {rss:.1f} MB; "
                  f"{latest} versions published and reloaded; {errors} failed requests")
        finally:
            stop(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
