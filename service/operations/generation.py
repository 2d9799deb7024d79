"""What an image request means, whatever door it came in by: its latents (given, drawn from seeds, of a class given
to a conditional version or found in an unconditional one's latent space, truncated towards the mean), and the
images of them from the engine.

Every route that makes images (/generate, /sweep, /interpolate, the Open Inference Protocol's infer, the class
latents route) states its request as a `Source` and calls `latents_of`, then `images_of` (or `draw`, both at once):
whether a class is given or found, and what a seed means, is decided here and nowhere else. Refusals are the
operations' own (`Refused`; the engine's `Overloaded` when admission says no), translated by each front door.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

import anyio
import torch

from service.engine.batcher import Batcher, InferenceWorker, Task
from service.engine.engine import Engine
from service.engine.registry import LoadedModel
from service.operations import given_classes
from service.operations.found_classes import (
    MAX_CANDIDATES,
    class_candidates,
    find_class,
    likeliest_others,
    semantics_of,
)
from service.operations.rejections import MODEL_MISMATCH, Refused
from shared.store import ClassBoundary

Gone = Callable[[], Awaitable[None]]  # returns when the client has gone (or its request is complete)


class ClientGone(Exception):
    """The client disconnected before its images were computed."""


@dataclass(frozen=True)
class Source:
    """Where a request's latents come from: given rows (`latents`, checked for length by the caller's parser), or
    `count` drawn from `seed`, or one drawn from each of `seeds`; and a `cls` (one for all, or one per image), given to
    a conditional version or found in an unconditional one's latent space; `truncation` towards the mean. `field`
    is where a refusal about the class points (the request's own name for it)."""

    latents: torch.Tensor | None = None
    seed: int = 0
    count: int = 1
    seeds: Sequence[int] | None = None
    cls: str | int | Sequence[str | int] | None = None
    truncation: float | None = None
    field: tuple = ("class",)

    @property
    def n(self) -> int:
        return len(self.latents) if self.latents is not None else len(self.seeds) if self.seeds is not None \
            else self.count


@dataclass
class Latents:
    latents: torch.Tensor  # (n, latent_dim) float32
    cls: ClassBoundary | None = None  # a class found in the latent space: its images come from `class_images`
    class_name: str | None = None  # the class the latents are of, if any


def latents_of(model: LoadedModel, source: Source) -> Latents:
    """The latents `source` names for `model`. A conditional version is given the class (its label goes in with
    each z: exact, at the cost of any request); an unconditional one's class is found in its latent space, whose
    candidates only `class_images` can settle (they need the classifier's word on their images)."""
    layout = model.layout
    if source.cls is not None and layout.conditional:
        refs = [source.cls] * source.n if isinstance(source.cls, (str, int)) else list(source.cls)
        if len(refs) == 1:
            refs *= source.n
        if len(refs) != source.n:
            raise Refused(list(source.field), f"give one class, or one for each of the {source.n} images",
                          MODEL_MISMATCH)
        labels = [given_classes.label_of(model, ref, list(source.field)) for ref in refs]
        latents = layout.labelled(layout.style_of(_drawn(model, source)), torch.tensor([i for i, _ in labels]))
        names = {name for _, name in labels}
        return Latents(layout.truncated(latents, source.truncation), class_name=names.pop() if len(names) == 1
                       else None)
    if source.cls is not None:
        if not isinstance(source.cls, (str, int)):
            raise Refused(list(source.field), f"{model.name} v{model.version} is not class-conditional: it takes one "
                                              "class for the whole request, found in its latent space", MODEL_MISMATCH)
        cls = find_class(semantics_of(model, list(source.field)), source.cls, list(source.field))
        return Latents(torch.empty(0, layout.width), cls=cls, class_name=cls.name)
    return Latents(layout.truncated(_drawn(model, source), source.truncation))


def _drawn(model: LoadedModel, source: Source) -> torch.Tensor:
    """The given rows, or those the seed (or seeds) draws, in the version's layout (a seed draws its class too)."""
    if source.latents is not None:
        return source.latents
    if source.seeds is not None:
        return torch.cat([model.layout.seeded(seed, 1) for seed in source.seeds])
    return model.layout.seeded(source.seed, source.count)


@dataclass
class Drawn:
    latents: torch.Tensor  # (n, latent_dim): what made the images
    images: torch.Tensor  # uint8 (n, C, H, W)
    class_name: str | None = None
    verified: int | None = None  # of a class request: how many the classifier put in the class


async def draw(model: LoadedModel, engine: Engine, source: Source, gone: Gone) -> Drawn:
    """The latents `source` names and their images: the one way a request's meaning becomes pictures."""
    found = latents_of(model, source)
    if found.cls is not None:
        return await class_images(model, engine, found.cls, source.seed, source.count, source.truncation, gone)
    images = await images_of(model.batcher, found.latents, gone)
    return Drawn(found.latents, images, found.class_name, source.n if found.class_name else None)


async def class_latents(model: LoadedModel, engine: Engine, source: Source, gone: Gone) -> Drawn:
    """The latents behind the images `draw` gives for a class request, in its grid's order: a conditional version's
    without a forward (the seed's z, each with the class's weights), an unconditional one's found as `draw` finds
    them (`images` then holds their images too)."""
    found = latents_of(model, source)
    if found.cls is None:
        return Drawn(found.latents, torch.empty(0, dtype=torch.uint8), found.class_name, source.n)
    return await class_images(model, engine, found.cls, source.seed, source.count, source.truncation, gone)


async def images_of(batcher: Batcher, latents: torch.Tensor, gone: Gone, alone: bool = False) -> torch.Tensor:
    """uint8 (n, C, H, W) images of `latents` from the batcher (`alone`: in forwards of their own). Raises
    Overloaded when admission refuses them or drops them at their deadline, and ClientGone if the client goes
    before its images are computed (its queued rows are dropped: they cost no forward)."""
    job = batcher.submit(latents, alone)
    result = asyncio.wrap_future(job.future)
    # Not cancelled when the images come first: the server ends the watch itself once the response is complete,
    # which is cheaper than cancelling a task on every request.
    watcher = asyncio.ensure_future(gone())
    watcher.add_done_callback(lambda _: job.future.done() or batcher.cancel(job))
    try:
        return await result
    except asyncio.CancelledError:
        if job.cancelled and not watcher.cancelled():  # the client went away, not the server
            raise ClientGone() from None
        raise


async def task_result(worker: InferenceWorker, task: Task, gone: Gone):
    """What a task of the inference thread returns; ClientGone (and the task stopped between its steps) if the
    client goes first."""
    result = asyncio.wrap_future(task.future)
    watcher = asyncio.ensure_future(gone())  # ended by the server once the response is complete
    watcher.add_done_callback(lambda _: task.future.done() or worker.cancel_task(task))
    try:
        return await result
    except asyncio.CancelledError:
        if task.cancelled and not watcher.cancelled():
            raise ClientGone() from None
        raise


async def class_images(model: LoadedModel, engine: Engine, cls: ClassBoundary, seed: int, count: int,
                       truncation: float | None, gone: Gone) -> Drawn:
    """`count` images of the class from `seed`: candidates the latent space puts in it, generated in forwards of
    their own (so the classifier's verdicts, and the images, are the same under any load), kept in the seed's
    order when the classifier agrees. If the model makes too few (after MAX_CANDIDATES per image), the rest are
    the candidates the classifier found most likely to be of the class (topped up, when the latent space's
    candidates run out, with the latents it finds likeliest among the others); if it makes none, Refused."""
    model.batcher.admit(count)  # before the candidates cost anything: a flood of refused requests stays cheap
    kept_images, kept_latents, spare = [], [], []
    for block in class_candidates(model.semantics, cls, seed, truncation, MAX_CANDIDATES * count):
        while len(block) and len(kept_images) < count:
            size = max(8, 2 * (count - len(kept_images)))  # a few more than still needed: most pass
            take, block = block[:size], block[size:]
            images = await images_of(model.batcher, take, gone, alone=True)
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
        raise Refused(["class"], f"{model.name} v{model.version} makes no images its classifier takes for "
                                 f"{cls.name!r} ({cls.share:.1%} of its samples)", MODEL_MISMATCH)
    if verified < count:
        missing = count - verified - len(spare)
        if missing > 0:  # even the latent space's candidates run out: its likeliest others, through the classifier
            others = likeliest_others(model.semantics, cls, seed, truncation, MAX_CANDIDATES * count, missing)
            images = await images_of(model.batcher, others, gone, alone=True)
            probs = await anyio.to_thread.run_sync(engine.classify, model.classifier, images)
            spare += [(float(probs[i, cls.index]), len(spare) + i, images[i], others[i]) for i in range(len(others))]
        for _, _, image, latent in sorted(spare, key=lambda s: (-s[0], s[1]))[:count - verified]:
            kept_images.append(image)
            kept_latents.append(latent)
    return Drawn(torch.stack(kept_latents), torch.stack(kept_images), cls.name, verified)
