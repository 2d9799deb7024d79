"""The serving engine: how a request's latents become images, batched with everyone else's.

`Engine.start` warms a freshly loaded generator up, finds its semantic directions, reads what its latent
space means (classes.json, with the classifier it ships), chooses the runtime and precision each batch size is
served with (`service.engine.forward_choice`), and gives it its batcher, whose batches run on the engine's one
inference thread; `Engine.score` runs a version's
discriminator (loaded on first use) and `Engine.classify` its classifier on the same thread. The engine
knows nothing of HTTP: the service's routes turn its answers and refusals into responses.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from service.engine.admission import PROJECTIONS, Overloaded
from service.engine.batcher import Batcher, BatchObserver, InferenceWorker, QueueBudget, Task
from service.engine.directions import Directions, semantic_directions
from service.engine.forward_choice import ForwardPlan, choose_forwards
from service.engine.projection_task import projection_steps
from service.engine.runtimes import Forwards, candidates
from shared.imaging.latents import LatentLayout, seeded_latents
from shared.imaging.networks import load_classifier, load_network, readable_form
from shared.imaging.pixels import to_model_range
from shared.imaging.precision import allowed_precisions, native_bf16
from shared.store import CLASSES, ClassSemantics, NotFound, Version, form_file


@dataclass(frozen=True)
class EngineConfig:
    """The engine's knobs (the service's settings of the same names fill them in)."""

    max_batch_latents: int = 256  # most latents in one forward; larger requests are split
    max_batch_wait_ms: float = 2.0  # how long a busy batcher waits to fill a batch
    max_queued_latents: int = 2048  # latents waiting in all queues together: the memory cap
    max_queue_delay_ms: float = 1000.0  # a request predicted to be done later than this after arrival is refused
    cuda_graphs: bool = True
    precision: str = "auto"  # auto | fp32 | bf16 (service.engine.forward_choice)
    runtime: str = "auto"  # auto | torchscript | export | onnxruntime | openvino (service.engine.runtimes)
    warmup_batch: int = 8
    discriminators_kept: int = 5  # discriminators held for /score, most recently used first
    max_projections: int = 4  # projections in progress at once; more are refused


@dataclass(frozen=True)
class Started:
    """A loaded generator, ready: where its requests queue, its semantic directions (None: no first layer to
    find them in), and what its latent space means with the classifier that found it (None: the version has
    no classes.json, e.g. trained on a folder of images without classes)."""

    batcher: Batcher
    directions: Directions | None
    plan: ForwardPlan  # what runs each batch size (runtime, precision), and why; the batcher's forward
    semantics: ClassSemantics | None = None
    classifier: torch.jit.ScriptModule | None = None
    generator: torch.nn.Module | None = None  # the version's generator as a torch module (projections use it)
    encoder: torch.nn.Module | None = None  # the encoder, when the version has one


class Engine:
    def __init__(self, config: EngineConfig, device: torch.device, observer: BatchObserver) -> None:
        self.config = config
        self.device = device
        self.observer = observer
        self.worker = InferenceWorker(f"inference-{device}")  # every forward on this device runs here
        self.budget = QueueBudget(config.max_queued_latents)  # shared by every loaded version
        self._discriminators: OrderedDict[tuple[str, int, str], torch.nn.Module] = OrderedDict()
        self._discriminators_lock = threading.Lock()

    def start(self, version: Version) -> Started:
        """Load the version's generator, warm it up and check it against the manifest, prepare its runner
        (capturing CUDA graphs), all on the inference thread (on the CPU, torch work on any other thread
        would start a second OpenMP team); return its batcher. Raises ValueError for a generator that does
        not produce what its manifest promises."""
        s = self.config

        def prepare() -> tuple:
            files, layout = version.manifest.files, LatentLayout.of(version.manifest)
            module = load_network(version.path, files, "generator", self.device)
            warm_up(module, version, self.device, s.warmup_batch)
            directions = semantic_directions(module, version.latent_dim,  # once per version: a small eigh
                                             version.manifest.input_classes)
            native = native_bf16(self.device)
            offered, left_out = candidates(version, self.device, s.runtime, allowed_precisions(s.precision, self.device))
            build = Forwards(version, self.device, layout, s.max_batch_latents, s.cuda_graphs, module,
                             readable_form(files, "generator"))
            plan = choose_forwards(offered, build, layout, s.max_batch_latents,
                                   {1, s.warmup_batch, s.max_batch_latents}, s.runtime, s.precision, native, left_out)
            classifier = load_classifier(version.path, files, self.device)
            encoder = (load_network(version.path, files, "encoder", self.device)
                       if readable_form(files, "encoder") else None)
            return plan, directions, classifier, module, encoder

        semantics = (ClassSemantics.model_validate_json((version.path / CLASSES).read_bytes())
                     if CLASSES in version.manifest.files else None)  # hashed and verified when the store listed it
        plan, directions, classifier, module, encoder = self.worker.call(prepare)
        batcher = Batcher(version.name, plan, self.worker, s.max_batch_latents, s.max_batch_wait_ms / 1000,
                          self.budget, self.observer, max_delay=s.max_queue_delay_ms / 1000,
                          runs_on=plan.runs_on)
        for n, seconds in plan.timings():  # admission predicts from the first request on; real batches refine it
            batcher.cost.observe(n, seconds)
        return Started(batcher, directions, plan, semantics, classifier, module, encoder)

    def score(self, version: Version, images: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """The discriminator's logits (N,) for uint8 images (N, H, W, C) at the model's size (a conditional
        version's D judges each with its class, `labels` (N,)). Blocking: call it from a worker thread. Raises
        NotFound when the version has no discriminator."""
        files = version.manifest.files
        form = readable_form(files, "discriminator")
        if form is None:
            raise NotFound(f"{version.name} v{version.version} has no discriminator to score with")
        key = (version.name, version.version, files[form_file("discriminator", form)].sha256)

        def run() -> np.ndarray:
            with self._discriminators_lock:
                module = self._discriminators.get(key)
            if module is None:  # loaded on first use, kept for the versions scored most recently
                module = load_network(version.path, files, "discriminator", self.device)
                with self._discriminators_lock:
                    self._discriminators[key] = module
                    while len(self._discriminators) > self.config.discriminators_kept:
                        self._discriminators.popitem(last=False)
            x = to_model_range(torch.from_numpy(images).permute(0, 3, 1, 2).to(self.device))
            given = () if labels is None else (torch.nn.functional.one_hot(
                torch.from_numpy(labels), version.manifest.input_classes).float().to(self.device),)
            with torch.inference_mode():
                return module(x, *given).float().reshape(-1).cpu().numpy()

        return self.worker.call(run)

    def classify(self, classifier: torch.jit.ScriptModule, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes) of uint8 images (N, C, H, W), by a version's classifier, on the inference
        thread. Blocking: call it from a worker thread."""

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return classifier(to_model_range(images.to(self.device))).softmax(1).float().cpu()

        return self.worker.call(run)

    def project(self, started: Started, layout: LatentLayout, image: torch.Tensor, steps: int, seed: int,
                label: int | None = None) -> Task:
        """Start the projection of a uint8 (C, H, W) image as a task between the batches; its future gets a
        `Projected`. A conditional version's (`layout`) searches z with the class held at `label` (None: the
        picture's class, found by the version's classifier). Raises Overloaded when MAX_PROJECTIONS are already
        in progress."""
        with self.worker.cond:
            busy = self.worker.tasks
        if busy >= self.config.max_projections:
            left = (self.worker.step_cost or 0.05) * steps * busy
            raise Overloaded(f"{busy} projections are in progress, as many as MAX_PROJECTIONS allows; retry shortly",
                             left, PROJECTIONS)
        return self.worker.start_task(projection_steps(started.generator, started.encoder, started.classifier, image,
                                                       layout, steps, seed, self.device,
                                                       started.plan.buckets[-1].precision, label))

    def resume(self) -> None:
        self.worker.resume()

    def stop(self) -> None:
        self.worker.stop()


def warm_up(module: torch.nn.Module, version: Version, device: torch.device, batch: int) -> None:
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

