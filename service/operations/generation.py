"""Images for a request, from the engine: admission as a 503, the batched forward, a client that leaves, and
class requests (candidates generated and kept when the version's classifier agrees).

This is the HTTP side's one way into the engine's batcher: the routes say what latents they want, and get
uint8 images (N, C, H, W) back, or an HTTPException that says why not.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import anyio
import torch
from fastapi import HTTPException, Request

from service.engine.batcher import Batcher, InferenceWorker, Overloaded, Task
from service.engine.engine import Engine
from service.engine.registry import LoadedModel
from service.operations.found_classes import MAX_CANDIDATES, class_candidates, likeliest_others
from service.operations.rejections import MODEL_MISMATCH, field_error
from shared.store import ClassBoundary


class ClientGone(Exception):
    """The client disconnected before its images were computed."""


def busy(e: Overloaded) -> HTTPException:
    """A refusal by the engine's admission (at once, or a queued request dropped at its deadline) as a 503."""
    return HTTPException(503, detail=str(e), headers={"Retry-After": str(e.retry_after)})


def admit(batcher: Batcher, n: int) -> None:
    """503 at once if `n` more latents would be refused for their predicted wait: before the request costs
    anything more (a flood of refused requests must stay cheap)."""
    try:
        batcher.admit(n)
    except Overloaded as e:
        raise busy(e) from None


async def images_for(batcher: Batcher, latents: torch.Tensor, request: Request, alone: bool = False) -> torch.Tensor:
    """uint8 (n, C, H, W) images of `latents` from the batcher (`alone`: in forwards of their own). Raises
    HTTPException(503) when admission refuses the request or drops it at its deadline, and ClientGone if the
    client disconnects before its images are computed (its queued rows are dropped: they cost no forward)."""
    try:
        job = batcher.submit(latents, alone)
    except Overloaded as e:
        raise busy(e) from None
    result = asyncio.wrap_future(job.future)
    # Not cancelled when the images come first: the server ends this receive() itself once the response is
    # complete, which is cheaper than cancelling a task on every request.
    watcher = asyncio.ensure_future(_disconnected(request))
    watcher.add_done_callback(lambda _: job.future.done() or batcher.cancel(job))
    try:
        return await result
    except asyncio.CancelledError:
        if job.cancelled and not watcher.cancelled():  # the client went away, not the server
            raise ClientGone() from None
        raise
    except Overloaded as e:
        raise busy(e) from None


async def _disconnected(request: Request) -> None:
    """Return when the client closes the connection or the response is complete (the body has been read:
    nothing else can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def task_result(worker: InferenceWorker, task: Task, request: Request):
    """What a task of the inference thread returns; ClientGone (and the task stopped between its steps) if the
    client disconnects first."""
    result = asyncio.wrap_future(task.future)
    watcher = asyncio.ensure_future(_disconnected(request))  # ended by the server once the response is complete
    watcher.add_done_callback(lambda _: task.future.done() or worker.cancel_task(task))
    try:
        return await result
    except asyncio.CancelledError:
        if task.cancelled and not watcher.cancelled():
            raise ClientGone() from None
        raise


@dataclass
class ClassImages:
    images: torch.Tensor  # uint8 (count, C, H, W)
    latents: torch.Tensor  # (count, latent_dim): what made them
    verified: int  # how many the classifier put in the class (the rest: the most likely of the others)


async def class_images(model: LoadedModel, engine: Engine, cls: ClassBoundary, seed: int, count: int,
                       truncation: float | None, request: Request) -> ClassImages:
    """`count` images of the class from `seed`: candidates the latent space puts in it, generated in forwards of
    their own (so the classifier's verdicts, and the images, are the same under any load), kept in the seed's
    order when the classifier agrees. If the model makes too few (after MAX_CANDIDATES per image), the rest are
    the candidates the classifier found most likely to be of the class (topped up, when the latent space's
    candidates run out, with the latents it finds likeliest among the others); if it makes none, a 422."""
    kept_images, kept_latents, spare = [], [], []
    for block in class_candidates(model.semantics, cls, seed, truncation, MAX_CANDIDATES * count):
        while len(block) and len(kept_images) < count:
            size = max(8, 2 * (count - len(kept_images)))  # a few more than still needed: most pass
            take, block = block[:size], block[size:]
            images = await images_for(model.batcher, take, request, alone=True)
            probs = await anyio.to_thread.run_sync(engine.classify, model.classifier, images)
            for i in range(len(take)):
                if probs[i].argmax() == cls.index and len(kept_images) < count:
                    kept_images.append(images[i])
                    kept_latents.append(take[i])
                else:
                    spare.append((float(probs[i, cls.index]), len(spare), images[i], take[i]))
        if len(kept_images) == count:
            break
    verified = len(kept_images)
    if not verified:
        raise field_error(["class"], f"{model.name} v{model.version} makes no images its classifier takes for "
                                     f"{cls.name!r} ({cls.share:.1%} of its samples)", MODEL_MISMATCH)
    if verified < count:
        missing = count - verified - len(spare)
        if missing > 0:  # even the latent space's candidates run out: its likeliest others, through the classifier
            others = likeliest_others(model.semantics, cls, seed, truncation, MAX_CANDIDATES * count, missing)
            images = await images_for(model.batcher, others, request, alone=True)
            probs = await anyio.to_thread.run_sync(engine.classify, model.classifier, images)
            spare += [(float(probs[i, cls.index]), len(spare) + i, images[i], others[i]) for i in range(len(others))]
        for _, _, image, latent in sorted(spare, key=lambda s: (-s[0], s[1]))[:count - verified]:
            kept_images.append(image)
            kept_latents.append(latent)
    return ClassImages(torch.stack(kept_images), torch.stack(kept_latents), verified)
