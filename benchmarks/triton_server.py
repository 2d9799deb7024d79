"""Triton Inference Server serving a latentlab generator.pt through PyTriton, configured as their docs recommend for
throughput: the model behind `@batch` with Triton's dynamic batcher, in bf16 where the CPU computes bf16
natively (as latentlab's PRECISION=auto would), fp32 otherwise. Its bf16 forward is latentlab's: a copy of the
generator with bf16 weights where it runs so, autocast where not, so that the two servers differ only in what
is around the forward. It speaks the Open Inference Protocol with the same
tensor names as latentlab's /v2 routes (input `latents` FP32 [-1, latent_dim], output `images` UINT8
[-1, H, W, C]), so the same tritonclient request, byte for byte, goes to either (benchmarks/protocol_compare.py).

PyTriton ships the Triton server binary; its Python-backend stub links the system libpython, so its virtualenv is
made with Debian's python (../shared/field-notes.md):

    /usr/bin/python3.11 -m venv .triton-venv
    .triton-venv/bin/pip install nvidia-pytriton torch==2.14.1
    .triton-venv/bin/python benchmarks/triton_server.py --version models/dcgan/v1 --port 8010

It prints `ready` once Triton answers, and serves until SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # latentlab's own check, without installing it
from shared.imaging.precision import BF16, bf16_weights, computing_in, resolve_precision  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", required=True, help="a version's directory in the store (generator.pt, manifest.json)")
    p.add_argument("--name", default="dcgan", help="the model's name in Triton")
    p.add_argument("--port", type=int, default=8010, help="HTTP port (gRPC and metrics on the next two)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--max-batch", type=int, default=256)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    manifest = json.loads((Path(args.version) / "manifest.json").read_text())
    latent_dim, (channels, height, width) = manifest["latent_dim"], manifest["image_shape"]
    # as latentlab loads it: eval mode, convolution weights channels-last (oneDNN's faster layout on the CPU)
    generator = torch.jit.load(str(Path(args.version) / "generator.pt"), map_location="cpu").eval()
    generator = generator.to(memory_format=torch.channels_last)
    precision = resolve_precision(args.precision, "cpu")
    held = bf16_weights(generator, latent_dim) if precision == BF16 else None  # None: autocast, as in latentlab

    @batch
    def infer(latents: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            if held is not None:
                images = held(torch.from_numpy(latents).to(torch.bfloat16))
            else:
                with computing_in(precision, "cpu"):
                    images = generator(torch.from_numpy(latents))
        pixels = images.float().add(1).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)  # latentlab's to_uint8
        return {"images": pixels.permute(0, 2, 3, 1).contiguous().numpy()}

    config = TritonConfig(http_port=args.port, grpc_port=args.port + 1, metrics_port=args.port + 2)
    with Triton(config=config) as triton:
        triton.bind(model_name=args.name, infer_func=infer,
                    inputs=[Tensor(name="latents", dtype=np.float32, shape=(latent_dim,))],
                    outputs=[Tensor(name="images", dtype=np.uint8, shape=(height, width, channels))],
                    config=ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher()))
        print(f"ready: {args.name} on :{args.port}, {precision}{' weights' if held is not None else ''}", flush=True)
        triton.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
