"""What a colour 64x64 grid costs against a grey 32x32 one: POST /generate of `--count` images from each version,
through the app in-process (TestClient, PRECISION=fp32), median of `--runs` requests after a warm-up.

    python benchmarks/colour_cost.py --store ./models --grey dcgan --colour dcgan64
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from service.api.app import create_app  # noqa: E402
from service.api.settings import Settings  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--grey", required=True, help="a 1 x 32 x 32 model's name")
    p.add_argument("--colour", required=True, help="a 3 x 64 x 64 model's name")
    p.add_argument("--count", type=int, default=64)
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    settings = Settings(model_dir=args.store, device="cpu", precision="fp32", reload_interval=3600)
    with TestClient(create_app(settings)) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.1)
        ms = {}
        for name in (args.grey, args.colour, args.grey, args.colour):  # alternated: drift hits both
            body = {"model": name, "seed": 0, "count": args.count}
            client.post("/generate", json=body)
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                r = client.post("/generate", json=body)
                times.append(time.perf_counter() - started)
                assert r.status_code == 200, r.text
            ms.setdefault(name, []).append(1e3 * statistics.median(times))
    grey, colour = (statistics.median(ms[n]) for n in (args.grey, args.colour))
    print(f"| model | ms per {args.count}-image grid | ms per image |\n|---|---|---|")
    print(f"| {args.grey} (1x32x32) | {grey:.1f} | {grey / args.count:.2f} |")
    print(f"| {args.colour} (3x64x64) | {colour:.1f} | {colour / args.count:.2f} |")
    print(f"colour 64x64 / grey 32x32 per image: {colour / grey:.2f}x (12x the pixels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
