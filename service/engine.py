"""The serving engine: how a request's latents become images, batched with everyone else's.

`Engine.start` warms a freshly loaded generator up, finds its semantic directions, and gives it its
runner (CUDA graphs on CUDA) and its batcher, whose batches run on the engine's one inference thread;
`Engine.score` runs a version's discriminator (loaded on first use) on the same thread;
`images_for` is what a route awaits: the request's rows from the shared forward, a 503 with
Retry-After when the queues are full, and nothing computed at all for a client that has gone away.
"""
from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from fastapi import HTTPException, Request

from service.batcher import Batcher, BatchObserver, InferenceWorker, Overloaded, QueueBudget
from service.directions import Directions, semantic_directions
from service.runner import GeneratorRunner
from service.settings import Settings
from shared.imaging import torchscript
from shared.imaging.latents import seeded_latents
from shared.imaging.pixels import to_model_range
from shared.store import DISCRIMINATOR, NotFound, Version


class ClientGone(Exception):
    """The client disconnected before its images were computed."""


@dataclass(frozen=True)
class Started:
    """A loaded generator, ready: where its requests queue, and its semantic directions (None: no first
    layer to find them in)."""

    batcher: Batcher
    directions: Directions | None


class Engine:
    def __init__(self, settings: Settings, device: torch.device, observer: BatchObserver) -> None:
        self.settings = settings
        self.device = device
        self.observer = observer
        self.worker = InferenceWorker(f"inference-{device}")  # every forward on this device runs here
        self.budget = QueueBudget(settings.max_queued_latents)  # shared by every loaded version
        self._discriminators: OrderedDict[tuple[str, int, str], torch.jit.ScriptModule] = OrderedDict()
        self._discriminators_lock = threading.Lock()

    def start(self, version: Version) -> Started:
        """Load the version's generator, warm it up and check it against the manifest, prepare its runner
        (capturing CUDA graphs), all on the inference thread (on the CPU, torch work on any other thread
        would start a second OpenMP team); return its batcher. Raises ValueError for a generator that does
        not produce what its manifest promises."""
        s = self.settings

        def prepare() -> tuple[GeneratorRunner, Directions | None]:
            module = torchscript.load(version.generator_path, self.device)
            warm_up(module, version, self.device, s.warmup_batch)
            directions = semantic_directions(module, version.latent_dim)  # once per version: a small eigh
            return GeneratorRunner(module, self.device, version.latent_dim, s.max_batch_latents, s.cuda_graphs), directions

        runner, directions = self.worker.call(prepare)
        return Started(Batcher(version.name, runner, self.worker, s.max_batch_latents, s.max_batch_wait_ms / 1000,
                               self.budget, self.observer), directions)

    def score(self, version: Version, images: np.ndarray) -> np.ndarray:
        """The discriminator's logits (N,) for uint8 images (N, H, W, C) at the model's size. Blocking: call
        it from a worker thread. Raises NotFound when the version has no discriminator."""
        if DISCRIMINATOR not in version.manifest.files:
            raise NotFound(f"{version.name} v{version.version} has no {DISCRIMINATOR} to score with")
        key = (version.name, version.version, version.manifest.files[DISCRIMINATOR].sha256)

        def run() -> np.ndarray:
            with self._discriminators_lock:
                module = self._discriminators.get(key)
            if module is None:  # loaded on first use, kept for the versions scored most recently
                module = torchscript.load(version.discriminator_path, self.device)
                with self._discriminators_lock:
                    self._discriminators[key] = module
                    while len(self._discriminators) > self.settings.pinned_cache_size + 1:
                        self._discriminators.popitem(last=False)
            x = to_model_range(torch.from_numpy(images).permute(0, 3, 1, 2).to(self.device))
            with torch.inference_mode():
                return module(x).float().reshape(-1).cpu().numpy()

        return self.worker.call(run)

    def resume(self) -> None:
        self.worker.resume()

    def stop(self) -> None:
        self.worker.stop()


def warm_up(module: torch.jit.ScriptModule, version: Version, device: torch.device, batch: int) -> None:
    """Run real batches first (TorchScript's first calls are slow: profiling, kernel selection), and check
    that the output is what the manifest promises."""
    z = seeded_latents(0, batch, version.latent_dim).to(device)
    with torch.inference_mode():
        for _ in range(3):
            out = module(z)
    expected = (batch, *version.image_shape)
    if tuple(out.shape) != expected:
        raise ValueError(f"generator output shape {tuple(out.shape)} does not match the manifest's {expected}")
    if not torch.isfinite(out).all():
        raise ValueError("generator output is not finite")


async def images_for(batcher: Batcher, latents: torch.Tensor, request: Request) -> torch.Tensor:
    """uint8 (n, C, H, W) images of `latents` from the batcher. Raises HTTPException(503) when the queues
    are full, and ClientGone (after dropping the job) if the client disconnects first."""
    try:
        job = batcher.submit(latents)
    except Overloaded as e:
        raise HTTPException(503, detail=str(e), headers={"Retry-After": str(e.retry_after)}) from None
    result = asyncio.wrap_future(job.future)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((result, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not result.done():
        batcher.cancel(job)
        raise ClientGone()
    return result.result()


async def _disconnected(request: Request) -> None:
    """Return when the client closes the connection (the body has been read: nothing else can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
