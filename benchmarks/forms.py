"""Every form of a version's generator against its TorchScript file: the pixels (max and mean grey-level
difference on the same latents, quantised as the service quantises) and the forward time of each runtime.

    python benchmarks/forms.py --store MODEL_DIR --models dcgan gan

Each runtime is timed alone in its own process (ONNX Runtime's thread pool and torch's OpenMP threads spin after
each call and slow each other down when one process alternates them), with torch's and ONNX Runtime's threads set
to the cores; medians of --runs forwards after one untimed call.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from service.engine.forward_choice import time_forwards  # noqa: E402
from shared.imaging import torchscript  # noqa: E402
from shared.imaging.grids import to_uint8  # noqa: E402
from shared.imaging.latents import LatentLayout  # noqa: E402
from shared.imaging.precision import BF16, FP32, computing_in  # noqa: E402
from shared.store import Store, form_file  # noqa: E402

RUNTIMES = ("torchscript fp32", "torchscript bf16", "export fp32", "onnxruntime fp32")
BATCHES = (1, 8, 32, 64)


def forward_of(path: Path, runtime: str, layout: LatentLayout):
    """A function (N, width) float32 latents -> float images, for one runtime of a version's generator."""
    kind, precision = runtime.split()
    if kind == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(path / form_file("generator", "onnx")), options,
                                               providers=["CPUExecutionProvider"])

        def run(z: torch.Tensor) -> torch.Tensor:
            feed = {"latents": layout.style_of(z).numpy()}
            if layout.conditional:
                feed["class"] = layout.class_weights(z).numpy()
            return torch.from_numpy(session.run(["images"], feed)[0])
        return run
    module = (torchscript.load(path / form_file("generator", "torchscript")) if kind == "torchscript"
              else torch.export.load(path / form_file("generator", "export")).module())

    def run(z: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), computing_in(BF16 if precision == "bf16" else FP32, torch.device("cpu")):
            return module(z).float()
    return run


def timings(path: Path, runtime: str, runs: int) -> dict[int, float]:
    """Median ms per forward at each batch size (run in a child process: one runtime per process)."""
    version = Store(path.parent.parent).get(path.parent.name, int(path.name[1:]))
    layout = LatentLayout.of(version.manifest)
    seconds = time_forwards(forward_of(path, runtime, layout), layout.width, set(BATCHES), runs)
    return {n: s * 1000 for n, s in seconds.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"))
    p.add_argument("--models", nargs="+", default=["dcgan"])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--samples", type=int, default=256, help="latents the pixels are compared on")
    p.add_argument("--child", nargs=2, metavar=("VERSION_DIR", "RUNTIME"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(timings(Path(args.child[0]), args.child[1], args.runs)))
        return 0
    pixels, speed = [], []
    for name in args.models:
        version = Store(args.store).get(name)
        layout = LatentLayout.of(version.manifest)
        z = layout.seeded(7, args.samples)
        reference = to_uint8(forward_of(version.path, "torchscript fp32", layout)(z)).numpy().astype(int)
        for runtime in RUNTIMES[1:]:
            diff = np.abs(to_uint8(forward_of(version.path, runtime, layout)(z)).numpy().astype(int) - reference)
            pixels.append(f"| {name} v{version.version} | {runtime} | {diff.max()} | {diff.mean():.3f} |")
        for runtime in RUNTIMES:
            child = subprocess.run([sys.executable, __file__, "--store", args.store, "--runs", str(args.runs),
                                    "--child", str(version.path), runtime], capture_output=True, text=True, check=True)
            ms = json.loads(child.stdout)
            speed.append(f"| {name} v{version.version} | {runtime} | " + " | ".join(f"{ms[str(n)]:.2f}" for n in BATCHES)
                         + " |")
    print("| version | form and precision | max grey-level difference | mean |\n|---|---|---|---|")
    print("\n".join(pixels))
    print(f"\n| version | runtime | {' | '.join(f'batch {n} (ms)' for n in BATCHES)} |\n|---|---|" + "---|" * len(BATCHES))
    print("\n".join(speed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
