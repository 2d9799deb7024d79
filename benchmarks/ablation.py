"""What each part of a recipe buys: train one architecture with the study recipe and with variants of it, at equal
epochs, and evaluate every run with `python -m trainer.evaluate` (10,000 samples) as the trainer publishes it.
Prints one Markdown table, with each run's FID as a multiple of the study recipe's (same architecture, epochs,
data and seed).

    python benchmarks/ablation.py --arch gan --epochs 40                          # every component, alone
    python benchmarks/ablation.py --arch gan --epochs 40 --variants stable,stable+r1=10,stable+ema=0.99
    python benchmarks/ablation.py --arch dcgan --epochs 3 --limit 20000 --variants study,+ema,+spectral-norm
    python benchmarks/ablation.py --arch dcgan --epochs 5 --variants study,stable --seed 1
    python benchmarks/ablation.py --arch dcgan --epochs 5 --variants study,stable --eval-every 1 --figure fid.png
    python benchmarks/ablation.py --arch resnet --minutes 10,30 --variants stable --seed 1   # quality per minute

With --minutes the runs train for time budgets instead of epochs: one run per variant, published at each budget
(10 minutes, then resumed to 30), each reading evaluated as the trainer publishes it. A recipe whose schedule spans
its run (--lr-decay) needs --separate-budgets: a run of its own for each budget.

A variant is a name from VARIANTS, or a base (`study`, `stable`, or a recipe file of `python -m trainer.tune`, by
path or by the name of one latentlab ships) followed by `+name=value` overrides of trainer flags (`stable+r1=10`,
`study+batch-size=64`, `stable+ema=0.99+no-ema-warmup`, `r3gan-fashion-mnist`). Results are appended to
--results (JSON lines) as each run finishes, keyed by architecture, variant, epochs, limit and seed, so an
interrupted ablation continues where it stopped. `--table` only prints what is there.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.store import Store  # noqa: E402

VARIANTS = {
    "study": [],
    "seed": [],  # the study's recipe under its former name: older result files use it
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
    # the DCGAN's stabilisers: spectral norm instead of D's BatchNorm, the SN-GAN/SA-GAN optimiser
    # (hinge, beta1 0, two time scales), instance noise, an average with a half-life, LeCam
    "+d-norm-spectral": ["--d-norm", "spectral"],
    "+sngan": ["--d-norm", "spectral", "--loss", "hinge", "--beta1", "0", "--lr-g", "1e-4", "--lr-d", "4e-4"],
    "+instance-noise": ["--instance-noise", "0.1"],
    "+ema-kimg": ["--ema-kimg", "10"],
    "+lecam": ["--lecam", "0.3"],
    "+sngan+ema": ["--d-norm", "spectral", "--loss", "hinge", "--beta1", "0", "--lr-g", "1e-4", "--lr-d", "4e-4",
                   "--ema-kimg", "10"],
    "+sngan+ema+lecam": ["--d-norm", "spectral", "--loss", "hinge", "--beta1", "0", "--lr-g", "1e-4", "--lr-d", "4e-4",
                         "--ema-kimg", "10", "--lecam", "0.3"],
    "+sngan+ema+noise": ["--d-norm", "spectral", "--loss", "hinge", "--beta1", "0", "--lr-g", "1e-4", "--lr-d", "4e-4",
                         "--ema-kimg", "10", "--instance-noise", "0.1"],
    "+spectral+ema": ["--d-norm", "spectral", "--ema-kimg", "10"],  # the study's optimiser, D without BatchNorm
    "+batch32+ema": ["--batch-size", "32", "--ema-kimg", "10"],
    "stable": ["--recipe", "stable"],
}
COLUMNS = ("architecture", "recipe", "length", "seed", "FID", "SWD", "KID", "precision", "recall", "class entropy", "seconds")


def flags_of(variant: str) -> list[str]:
    """The trainer flags of a named variant, or of `base+flag=value+flag...` (a flag without a value is a switch)."""
    if variant in VARIANTS:
        return VARIANTS[variant]
    base, *overrides = variant.split("+")
    if base in ("study", "seed", "stable") and not overrides:
        raise ValueError(f"unknown variant {variant!r}: a name of {', '.join(VARIANTS)}, study/stable+flag=value, "
                         "or a recipe file (python -m trainer.tune's), by its path or name, with any overrides")
    flags = ["--recipe", base]
    for override in overrides:
        name, _, value = override.partition("=")
        flags += [f"--{name}", value] if value else [f"--{name}"]
    return flags


def model_name(arch: str, variant: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", f"{arch}-{variant.lstrip('+')}").strip("-")


def within_store_limit(name: str, limit: int = 64) -> str:
    """`name` if the store takes it (at most 64 characters: NAME_PATTERN in shared/store/layout.py), else its start
    and a digest of the whole, so that two long variants that begin alike still get models of their own."""
    if len(name) <= limit:
        return name
    return f"{name[:limit - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(arch: str, variant: str, args, minutes: float | None = None) -> dict:
    """One training run to --epochs, or (`minutes`) the run trained to that budget, resumed from a shorter one (or,
    with --separate-budgets, from nothing)."""
    data = args.dataset != "fashion-mnist" or args.image_size
    separate = minutes and args.separate_budgets
    name = within_store_limit(model_name(arch, variant) + (f"-{args.dataset}{args.image_size or ''}" if data else "")
                              + (f"-{minutes:g}min" if separate else "") + (f"-s{args.seed}" if args.seed else ""))
    length = ["--epochs", str(args.epochs)] if minutes is None else ["--minutes", f"{minutes:g}"]
    command = [sys.executable, "-m", "trainer", "--arch", arch, *length, "--name", name,
               "--out", str(args.store), "--seed", str(args.seed), "--dataset", args.dataset,
               *(["--data-dir", str(args.data_dir)] if args.data_dir else []),
               *(["--image-size", str(args.image_size)] if args.image_size else []),
               *(["--batch-size", str(args.batch_size)] if args.batch_size else []), "--no-progress",
               *(["--precision", args.precision] if args.precision else []),
               *(["--limit", str(args.limit)] if args.limit else []),
               *(["--eval-every", str(args.eval_every)] if args.eval_every else []),
               *(["--eval-samples", str(args.eval_samples)] if args.eval_samples else []),
               *([] if args.serve_ready else ["--no-encoder", "--no-classes"]), *(["--resume"] if args.resume or (minutes and not separate) else []),
               *flags_of(variant)]
    print(f"$ {' '.join(command[1:])}", file=sys.stderr, flush=True)
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    manifest = Store(args.store).get(name).manifest
    m = manifest.metrics
    return {"architecture": arch, "recipe": variant, "epochs": None if minutes else args.epochs, "minutes": minutes,
            "dataset": args.dataset, "image_size": args.image_size, "seed": args.seed, "FID": m.fid, "SWD": m.swd,
            "KID": m.kid, "precision": m.precision, "recall": m.recall, "class entropy": m.class_entropy,
            "seconds": manifest.train_seconds, "steps": manifest.iterations, "batch": manifest.global_batch_size,
            "steps_per_second": manifest.iterations / manifest.train_seconds, "model": name, "limit": args.limit,
            "flags": " ".join(flags_of(variant)) or "(none)", "train_precision": args.precision, "quality": manifest.quality_history,
            **({"separate_budgets": True} if separate else {}),
            "commit": commit()}


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _length(r: dict) -> str:
    length = f"{r['minutes']:g} min" if r.get("minutes") else f"{r['epochs']} epochs"
    return length + (f" ({r['limit']:,} images)" if r.get("limit") else "")


def _same_run(a: dict, b: dict) -> bool:
    """Whether two rows trained on the same data for the same length with the same seed and precision."""
    keys = ("epochs", "minutes", "limit", "seed", "train_precision", "dataset", "image_size")
    older = {"seed": 0, "dataset": "fashion-mnist"}  # rows written before these were recorded
    return all(a.get(k, older.get(k)) == b.get(k, older.get(k)) for k in keys)


def table(rows: list[dict]) -> str:
    """Every run, its FID as a multiple of the study recipe's on the same architecture, data, length and seed."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        study = next((s for s in rows if s["architecture"] == r["architecture"] and s["recipe"] in ("study", "seed")
                      and _same_run(s, r)), None)
        fid = _num(r["FID"], 2) + (f" ({r['FID'] / study['FID']:.2f}x)" if study and r is not study and r["FID"] else "")
        lines.append(f"| {r['architecture']} | {r['recipe']} | {_length(r)} | {r.get('seed', 0)} | {fid} | "
                     f"{_num(r.get('SWD'), 2)} | {_num(r['KID'], 4)} | {_num(r['precision'], 3)} | {_num(r['recall'], 3)} | "
                     f"{_num(r['class entropy'], 3)} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def ranking(rows: list[dict], baseline: str = "dcgan") -> str:
    """Time-budget runs (--minutes) side by side: per data, budget, architecture and recipe the median over seeds
    of each measure, FID and SWD also as a multiple of the `baseline` architecture's median (its best recipe:
    the lowest median FID, else SWD, at that budget)."""
    timed = [r for r in rows if r.get("minutes")]
    groups: dict[tuple, list[dict]] = {}
    for r in timed:
        groups.setdefault((r.get("dataset", "fashion-mnist"), r.get("image_size"), r["minutes"], r["architecture"],
                           r["recipe"]), []).append(r)

    def median(runs: list[dict], key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return float(statistics.median(values)) if values else None

    lines = ["| data | minutes | architecture | recipe | seeds | FID | SWD | recall | class entropy | steps/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, size, minutes, arch, recipe), runs in sorted(groups.items(), key=lambda g: (str(g[0][:2]), g[0][2:])):
        base = [g for k, g in groups.items() if k[:3] == (dataset, size, minutes) and k[3] == baseline]
        base = min(base, key=lambda g: (median(g, "FID") or median(g, "SWD") or 0), default=None)
        cells = []
        for key in ("FID", "SWD"):
            value, reference = median(runs, key), base and median(base, key)
            ratio = f" ({value / reference:.2f}x)" if value and reference and runs is not base else ""
            cells.append(_num(value, 2) + ratio)
        steps = median(runs, "steps_per_second")
        lines.append(f"| {dataset} {size or ''} | {minutes:g} | {arch} | {recipe} | {len(runs)} | {cells[0]} | "
                     f"{cells[1]} | {_num(median(runs, 'recall'), 3)} | {_num(median(runs, 'class entropy'), 3)} | "
                     f"{_num(steps, 2)} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=("gan", "dcgan", "resnet", "r3gan"), default="gan")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--minutes", default=None, metavar="M,M,...",
                   help="train for these budgets instead of --epochs (one run, published at each; e.g. 10,30)")
    p.add_argument("--separate-budgets", action="store_true",
                   help="with --minutes: train each budget as a run of its own, not the shorter one resumed (for a "
                        "recipe whose learning rate falls over its run, --lr-decay)")
    p.add_argument("--dataset", default="fashion-mnist", help="the trainer's --dataset")
    p.add_argument("--data-dir", type=Path, default=None, help="the trainer's --data-dir (a folder dataset's)")
    p.add_argument("--image-size", type=int, default=None, help="the trainer's --image-size")
    p.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "seed"),
                   help=f"comma-separated, of: {', '.join(VARIANTS)}, or study/stable+flag=value...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None, help="for every run (default: each recipe's, else 128)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=None,
                   help="for every run (default: each recipe's); bf16 makes a CPU with native bf16 train faster")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (a quicker ranking)")
    p.add_argument("--eval-every", type=int, default=None, help="also measure every N epochs (the FID curve)")
    p.add_argument("--eval-samples", type=int, default=10_000,
                   help="generated images every measurement uses (the results' tables: 10,000)")
    p.add_argument("--serve-ready", action="store_true",
                   help="also fit each version's encoder and class directions (POST /project, class requests), as "
                        "a plain training run does; off, the runs skip them (only the training time is reported)")
    p.add_argument("--resume", action="store_true",
                   help="continue each run's unfinished (or trained but unpublished) state instead of starting afresh")
    p.add_argument("--store", type=Path, default=Path("bench-out/ablation-store"),
                   help="where the runs are published (default: under bench-out/, which git ignores)")
    p.add_argument("--results", type=Path, default=Path("ablation.jsonl"))
    p.add_argument("--table", action="store_true", help="print the table of --results and stop")
    p.add_argument("--figure", type=Path, default=None,
                   help="draw FID and recall against epochs for the runs of --variants that measured them")
    p.add_argument("--against", choices=("epoch", "minutes"), default="epoch",
                   help="--figure's horizontal axis: epochs, or minutes of training (time to quality)")
    args = p.parse_args()
    args.store = args.store.resolve()  # the trainer runs in the repository root
    args.data_dir = args.data_dir and args.data_dir.resolve()
    done = [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    variants = args.variants.split(",")
    try:
        budgets = sorted(float(m) for m in args.minutes.split(",")) if args.minutes else []
    except ValueError:
        p.error(f"--minutes takes budgets in minutes, comma-separated (10,30), not {args.minutes!r}")
    if any(m <= 0 for m in budgets):
        p.error("--minutes budgets must be positive")
    if not args.table:
        for variant in variants:
            try:
                flags_of(variant)
            except ValueError as e:
                p.error(str(e))
            for minutes in budgets or [None]:
                wanted = {"epochs": None if minutes else args.epochs, "minutes": minutes, "limit": args.limit,
                          "seed": args.seed, "train_precision": args.precision, "dataset": args.dataset,
                          "image_size": args.image_size}
                if any(r["architecture"] == args.arch and r["recipe"] == variant and _same_run(r, wanted)
                       for r in done):
                    continue
                row = run(args.arch, variant, args, minutes)
                done.append(row)
                with open(args.results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(table([row]), file=sys.stderr, flush=True)
    print(table(done))
    if any(r.get("minutes") for r in done):
        print()
        print(ranking(done))
    if args.figure:
        from trainer.publishing.report import plot_quality

        if budgets:  # each run's readings at its budgets, against minutes
            curves: dict[str, list[dict]] = {}
            for r in done:
                if r.get("minutes") and r.get("dataset", "fashion-mnist") == args.dataset \
                        and r.get("image_size") == args.image_size:
                    curves.setdefault(f"{r['architecture']} {r['recipe']}, seed {r.get('seed', 0)}", []).append(
                        {"train_seconds": r["seconds"], "fid": r["FID"], "recall": r["recall"], "swd": r.get("SWD")})
            plot_quality(args.figure, curves, "minutes")
        else:
            curves = {f"{r['architecture']} {r['recipe']}, seed {r.get('seed', 0)}": r["quality"] for r in done
                      if r.get("quality") and r["architecture"] == args.arch and r["recipe"] in variants
                      and r["epochs"] == args.epochs}
            plot_quality(args.figure, curves, args.against)
        print(f"figure: {args.figure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
