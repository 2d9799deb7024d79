"""What each part of a recipe buys: train one architecture with the seed recipe, with each stabiliser added
alone, and with all of them (the `stable` recipe), at equal epochs and the same seed; every run is evaluated
by `python -m trainer.evaluate` (10,000 samples) as the trainer publishes it. Prints one Markdown table.

    python benchmarks/ablation.py --arch gan --epochs 40
    python benchmarks/ablation.py --arch dcgan --epochs 5 --variants seed,stable

Results are appended to --results (JSON lines) as each run finishes, and variants already there are
skipped, so an interrupted ablation continues where it stopped. `--table` only prints what is there.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.store import Store  # noqa: E402

VARIANTS = {
    "seed": [],
    "+ema": ["--ema", "0.999"],
    "+spectral-norm": ["--spectral-norm"],
    "+hinge": ["--loss", "hinge"],
    "+ttur": ["--lr-g", "1e-4", "--lr-d", "4e-4"],
    "+augment": ["--augment", "translation,cutout"],
    "+r1": ["--r1", "1"],
    "+all": ["--ema", "0.999", "--spectral-norm", "--loss", "hinge", "--lr-g", "1e-4", "--lr-d", "4e-4",
             "--augment", "translation,cutout", "--r1", "1"],
    "+ema+r1": ["--ema", "0.999", "--r1", "1"],
    "+ema+r1+spectral-norm": ["--ema", "0.999", "--r1", "1", "--spectral-norm"],
    "stable": ["--recipe", "stable"],
}
COLUMNS = ("architecture", "recipe", "epochs", "FID", "KID", "precision", "recall", "class entropy", "seconds")


def model_name(arch: str, variant: str) -> str:
    return f"{arch}-{variant.lstrip('+').replace('+', '-')}"


def run(arch: str, variant: str, args) -> dict:
    name = model_name(arch, variant)
    command = [sys.executable, "-m", "trainer", "--arch", arch, "--epochs", str(args.epochs), "--name", name,
               "--out", str(args.store), "--seed", str(args.seed), "--batch-size", str(args.batch_size),
               "--no-progress", *VARIANTS[variant]]
    if args.limit:
        command += ["--limit", str(args.limit)]
    print(f"$ {' '.join(command[1:])}", file=sys.stderr, flush=True)
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    manifest = Store(args.store).get(name).manifest
    m = manifest.metrics
    return {"architecture": arch, "recipe": variant, "epochs": args.epochs, "FID": m.fid, "KID": m.kid,
            "precision": m.precision, "recall": m.recall, "class entropy": m.class_entropy,
            "seconds": manifest.train_seconds, "model": name, "limit": args.limit,
            "flags": " ".join(VARIANTS[variant]) or "(none)"}


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        seed = next((s for s in rows if s["architecture"] == r["architecture"] and s["recipe"] == "seed"
                     and s["epochs"] == r["epochs"]), None)
        fid = f"{r['FID']:.2f}" + (f" ({r['FID'] / seed['FID']:.2f}x)" if seed and r is not seed else "")
        lines.append(f"| {r['architecture']} | {r['recipe']} | {r['epochs']} | {fid} | {r['KID']:.4f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['class entropy']:.3f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=("gan", "dcgan"), default="gan")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (a quick check)")
    p.add_argument("--store", type=Path, default=Path("ablation-store"))
    p.add_argument("--results", type=Path, default=Path("ablation.jsonl"))
    p.add_argument("--table", action="store_true", help="print the table of --results and stop")
    args = p.parse_args()
    done = [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    if not args.table:
        for variant in args.variants.split(","):
            if variant not in VARIANTS:
                p.error(f"unknown variant {variant!r}")
            if any(r["architecture"] == args.arch and r["recipe"] == variant and r["epochs"] == args.epochs
                   and r.get("limit") == args.limit for r in done):
                continue
            row = run(args.arch, variant, args)
            done.append(row)
            with open(args.results, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(table([row]), file=sys.stderr, flush=True)
    print(table(done))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
