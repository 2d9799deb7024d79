"""KServe's own client, `kserve.InferenceRESTClient` (Open Inference Protocol v2), against latentlab's /v2 routes:
liveness, readiness, images from seeds with binary data and from latents as JSON, a pinned version, a refused
request; the pixels checked against `POST /generate` for the same seeds.

The `kserve` package pins much of the web stack (FastAPI, uvicorn, pydantic...), so it lives in a virtualenv of its
own, not the project's:

    python3 -m venv .kserve-venv && .kserve-venv/bin/pip install kserve pillow
    MODEL_DIR=./models python -m service &                               # the service, from the project's venv
    .kserve-venv/bin/python benchmarks/kserve_client.py --url http://127.0.0.1:8000 --model dcgan

Where `kserve` cannot be imported it says so and exits 0 without calling anything (skipped).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import sys


def skipped(reason: str) -> int:
    print(f"skipped: {reason}")
    return 0


async def run(url: str, model: str) -> int:
    import httpx
    import numpy as np
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from PIL import Image

    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    print(f"server live: {await client.is_server_live(url)}, ready: {await client.is_server_ready(url)}, "
          f"{model} ready: {await client.is_model_ready(url, model)}")

    seeds = [0, 1, 2, 3]
    request = InferRequest(model_name=model, request_id="kserve-1", infer_inputs=[
        InferInput(name="seed", shape=[len(seeds)], datatype="INT64", data=seeds)])
    request.inputs[0].set_data_from_numpy(np.array(seeds, dtype=np.int64), binary_data=True)
    response = await client.infer(url, request, model_name=model)
    images = response.outputs[0].as_numpy()
    print(f"seeds {seeds}, binary data: {response.outputs[0].name} {images.dtype} {list(images.shape)}, "
          f"request id {response.id}")
    async with httpx.AsyncClient(base_url=url, timeout=60) as raw:
        same = 0
        for i, seed in enumerate(seeds):
            png = (await raw.post("/generate", json={"model": model, "seed": seed, "count": 1, "padding": 0})).content
            pixels = np.asarray(Image.open(io.BytesIO(png)))
            same += np.array_equal(images[i].reshape(pixels.shape), pixels)
    print(f"the pixels of POST /generate for the same seeds: {same} of {len(seeds)} images identical")

    latent_dim = (await httpx.AsyncClient(timeout=60).get(f"{url}/v2/models/{model}")).json()["inputs"][0]["shape"][1]
    latents = np.random.default_rng(0).standard_normal((2, latent_dim)).astype(np.float32)
    request = InferRequest(model_name=model, infer_inputs=[
        InferInput(name="latents", shape=list(latents.shape), datatype="FP32", data=latents.ravel().tolist())])
    response = await client.infer(url, request, model_name=model)
    print(f"latents as JSON: {response.outputs[0].name} {list(response.outputs[0].shape)}")

    refused = InferRequest(model_name=model, infer_inputs=[
        InferInput(name="nope", shape=[1], datatype="INT64", data=[1])])
    try:
        await client.infer(url, refused, model_name=model)
        print("an unknown input was not refused")
        return 1
    except httpx.HTTPStatusError as e:
        print(f"refused: {e.response.status_code} {e.response.json()['error']}")
    return 0 if same == len(seeds) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the service")
    p.add_argument("--model", default="dcgan")
    args = p.parse_args()
    try:
        import kserve  # noqa: F401
    except ImportError:
        return skipped(f"kserve is not installed for {sys.executable}: make its virtualenv as this script's header "
                       "says, and run the script with that virtualenv's python")
    return asyncio.run(run(args.url.rstrip("/"), args.model))


if __name__ == "__main__":
    raise SystemExit(main())
