"""The reference the serving benchmark compares latentlab with: what a competent user writes in an
afternoon. A sync FastAPI endpoint (FastAPI runs it in its thread pool), `torch.jit.load`, one forward
per request, torchvision's make_grid, Pillow's PNG defaults.

    python benchmarks/naive_app.py --generator MODEL_DIR/dcgan/v1/generator.pt --port 8766
"""
from __future__ import annotations

import argparse
import io

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Response
from PIL import Image
from pydantic import BaseModel
from torchvision.utils import make_grid


class GenerateRequest(BaseModel):
    model: str
    seed: int = 0
    count: int = 8
    nrow: int = 8


def create_app(generator_path: str) -> FastAPI:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.jit.load(generator_path, map_location=device).eval()
    latent_dim = 100  # the study's latent size
    app = FastAPI()

    @app.get("/readyz")
    def readyz() -> dict:
        return {"status": "ready", "device": str(device), "serving": {}}

    @app.post("/generate")
    def generate(req: GenerateRequest) -> Response:
        z = np.random.default_rng(req.seed).standard_normal((req.count, latent_dim), dtype=np.float32)
        with torch.no_grad():
            images = generator(torch.from_numpy(z).to(device))
        grid = make_grid(images, nrow=req.nrow, normalize=True, value_range=(-1, 1))
        array = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png")

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True, help="a generator.pt from the model store")
    p.add_argument("--port", type=int, default=8766)
    args = p.parse_args()
    uvicorn.run(create_app(args.generator), host="127.0.0.1", port=args.port, log_level="warning")
