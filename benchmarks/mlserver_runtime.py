"""MLServer (an Open Inference Protocol server from PyPI) serving a latentlab generator.pt: a custom runtime, the
way MLServer's docs write one, with adaptive batching on, in bf16 autocast where the CPU computes bf16 natively
(as latentlab's PRECISION=auto would). The same tensor names as latentlab's /v2 routes: input `latents` FP32
[-1, latent_dim], output `images` UINT8 [-1, H, W, C]. MLServer reads JSON tensor data only over REST (no binary
extension), so benchmarks/protocol_compare.py sends it, and the others beside it, tritonclient's JSON request.

MLServer pins its own web stack, so it lives in a virtualenv of its own:

    python3 -m venv .mlserver-venv && .mlserver-venv/bin/pip install mlserver torch==2.14.1
    .mlserver-venv/bin/python benchmarks/mlserver_runtime.py --version models/dcgan/v1 --port 8020

That writes MLServer's settings.json and model-settings.json into a scratch folder and runs `mlserver start` on it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # latentlab's own check, without installing it
from shared.imaging.precision import computing_in, resolve_precision  # noqa: E402

try:
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest, InferenceResponse
except ImportError:  # imported by `main` without mlserver only to print how to get it
    MLModel = object


class Generator(MLModel):
    """latents (N, latent_dim) float32 -> images (N, H, W, C) uint8, quantised as latentlab's to_uint8."""

    async def load(self) -> bool:
        version = Path(self.settings.parameters.uri)
        self.generator = torch.jit.load(str(version / "generator.pt"), map_location="cpu").eval()
        self.generator = self.generator.to(memory_format=torch.channels_last)
        self.precision = resolve_precision(os.environ.get("GENERATOR_PRECISION", "auto"), "cpu")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        latents = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        with torch.inference_mode(), computing_in(self.precision, "cpu"):
            images = self.generator(torch.from_numpy(latents))
        pixels = images.float().add(1).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)
        return InferenceResponse(model_name=self.name, outputs=[
            NumpyCodec.encode_output("images", pixels.permute(0, 2, 3, 1).contiguous().numpy())])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", required=True, help="a version's directory in the store (generator.pt, manifest.json)")
    p.add_argument("--name", default="dcgan")
    p.add_argument("--port", type=int, default=8020, help="HTTP port (gRPC on the next one)")
    p.add_argument("--max-batch", type=int, default=32, help="adaptive batching: requests per batch at most")
    p.add_argument("--max-batch-ms", type=float, default=2.0, help="adaptive batching: the longest wait for a batch")
    args = p.parse_args()
    if MLModel is object:
        raise SystemExit(f"mlserver is not installed for {sys.executable}: make its virtualenv as this script's "
                         "header says")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": args.port, "grpc_port": args.port + 1, "metrics_port": args.port + 2,
            "parallel_workers": 0, "debug": False}))  # one process: the model in the server's own
        (folder / "model-settings.json").write_text(json.dumps({
            "name": args.name, "implementation": "mlserver_runtime.Generator",
            "parameters": {"uri": str(Path(args.version).resolve())},
            "max_batch_size": args.max_batch, "max_batch_time": args.max_batch_ms / 1000}))
        env = {**os.environ, "PYTHONPATH": f"{Path(__file__).parent}:{os.environ.get('PYTHONPATH', '')}"}
        mlserver = Path(sys.executable).parent / "mlserver"
        return subprocess.run([str(mlserver), "start", str(folder)], env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
