"""Turn a finished training run into a store version: its networks in every form, the study's figures, a manifest."""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Callable

import torch

from shared.imaging import torchscript
from shared.imaging.latents import LatentLayout
from shared.imaging.networks import load_network
from shared.store import (
    CLASSES,
    CLASSIFIER,
    REPORT_DIR,
    ManifestDraft,
    Store,
    Version,
)
from shared.store.manifest import ParameterCounts
from trainer.publishing.encoder import EncoderResult
from trainer.publishing.export import export_network
from trainer.publishing.report import write_report
from trainer.training.architectures import Architecture, count_parameters, run_architecture
from trainer.training.loop import TrainResult
from trainer.training.nets import without_parametrizations
from trainer.training.recipe import describe
from trainer.training.state import HISTORY_COLUMNS

CHECK_SEED, CHECK_COUNT = 1234, 16


def publish_run(store: Store, result: TrainResult, command: list[str] | None = None,
                encoder: EncoderResult | None = None, log: Callable[[str], None] = lambda message: None,
                progress: bool | None = False) -> Version:
    """The run as a new version of its model; the class semantics (FashionMNIST) are found on the way, shown as a
    phase through `log` and `progress` (see trainer.training.phases)."""
    cfg = result.config
    arch = run_architecture(cfg)
    G = copy.deepcopy(result.generator).cpu().eval()  # G's moving average when the recipe keeps one
    with torch.random.fork_rng(devices=[]):  # building a plain D initialises weights: leave the RNG alone
        D = without_parametrizations(result.discriminator,
                                     arch.discriminator(batch_norm=cfg.d_norm == "batch")).eval()
    networks = {"generator": G, "discriminator": D}
    if encoder is not None and encoder.encoder is not None:
        networks["encoder"] = encoder.encoder
    if not torchscript.available():
        log("TorchScript skipped: this torch cannot run it; the version gets its torch.export and ONNX forms")
    with store.staging(cfg.name) as stage:
        forms = export_networks(networks, arch.layout, stage)
        scripted_G = load_network(stage, os.listdir(stage), "generator")  # the readers' pixels, from the file
        recipe = describe(cfg)
        write_report(stage / REPORT_DIR, result.history, result.iterations_per_epoch, scripted_G,
                     arch.layout, classes=cfg.class_names, title=f"{cfg.name} ({arch.name}, {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}"
                                            f"{'' if cfg.recipe == 'study' else ', ' + cfg.recipe + ' recipe'})",
                     d_scores=recipe["d_scores"], quality=result.quality)
        if cfg.class_samples and cfg.dataset == "fashion-mnist":
            write_semantics(stage, scripted_G, arch.layout, cfg.class_samples, cfg.precision, progress, log)
        encoded = encoder.record(first_check(forms["encoder"])) if "encoder" in forms else None
        manifest = manifest_draft(result, arch, G, D, forms, encoded, command if command is not None else sys.argv)
        return store.publish(cfg.name, stage, manifest)


def check_inputs(G: torch.nn.Module, layout: LatentLayout) -> dict[str, tuple[torch.Tensor, ...]]:
    """The fixed inputs every form of each network is checked on: seeded latents for G; G's images of them for D
    (a conditional D with their classes too: the one-hot G was given) and for the encoder."""
    z = layout.seeded(CHECK_SEED, CHECK_COUNT)
    with torch.no_grad():
        fakes = G(z)
    return {"generator": (z,), "discriminator": (fakes, layout.class_weights(z)) if layout.conditional else (fakes,),
            "encoder": (fakes,)}


def export_networks(networks: dict[str, torch.nn.Module], layout: LatentLayout,
                    directory: Path) -> dict[str, dict[str, float]]:
    """Every form of each network into `directory`, checked on `check_inputs` (traced on their first two rows);
    {network: {form: max abs difference}}."""
    inputs = check_inputs(networks["generator"], layout)
    return {network: export_network(network, module, tuple(x[:2] for x in inputs[network]), inputs[network],
                                    directory, layout) for network, module in networks.items()}


def first_check(diffs: dict[str, float]) -> float:
    """The check of a network's first form: TorchScript, or the export program where TorchScript is skipped."""
    return diffs.get("torchscript", diffs["export"])


def manifest_draft(result: TrainResult, arch: Architecture, G: torch.nn.Module, D: torch.nn.Module,
                   forms: dict[str, dict[str, float]], encoded: dict | None, command: list[str]) -> ManifestDraft:
    """What the manifest says of a run: its settings, its shapes, its training and its export checks."""
    cfg = result.config
    recipe = describe(cfg)
    last_epoch = result.history[-result.iterations_per_epoch:]
    return ManifestDraft(
        architecture=arch.name,
        latent_dim=arch.layout.width,
        image_shape=arch.image_shape,
        style_dim=arch.layout.style,
        **({"conditional": True, "class_names": cfg.class_names} if arch.layout.conditional else {}),
        dataset=cfg.dataset,
        num_images=result.num_images,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        world_size=result.world_size,
        global_batch_size=cfg.batch_size * result.world_size,
        precision=cfg.precision,
        cuda_graphs=result.cuda_graphs,
        last_partial_batch=("trained eagerly, outside the graph" if result.cuda_graphs else "trained")
        if result.num_images % (cfg.batch_size * result.world_size) else "none: the batches divide the data",
        learning_rate=cfg.lr,
        recipe=recipe,
        betas=(cfg.beta1, cfg.beta2),
        seed=cfg.seed,
        limit=cfg.limit,
        torch_version=torch.__version__,
        trained_on=result.device,
        train_seconds=round(result.seconds, 2),
        iterations=len(result.history),
        parameters=ParameterCounts(generator=count_parameters(G), discriminator=count_parameters(D)),
        generator_io={"input": ["N", arch.layout.width], "output": ["N", *arch.image_shape], "range": [-1, 1],
                      **({"input_layout": f"z ({arch.layout.style}) then the class as {arch.layout.classes} weights "
                                          "(a one-hot)"} if arch.layout.conditional else {})},
        discriminator_output="logits" if recipe["d_scores"] == "probability" else f"raw scores ({cfg.loss} loss)",
        export_max_abs_diff={network: forms[network]["torchscript"] for network in ("generator", "discriminator")}
        if "torchscript" in forms["generator"] else None,
        forms={network: {form: diff for form, diff in diffs.items() if form != "torchscript"}
               for network, diffs in forms.items()},
        final_epoch_means=dict(zip(HISTORY_COLUMNS, last_epoch.mean(0).tolist())) if len(last_epoch) else None,
        quality_history=result.quality or None,
        encoder=encoded,
        config=cfg.to_dict(),
        command=command,
    )


def write_semantics(directory: Path, generator: torch.nn.Module, layout: LatentLayout, samples: int,
                    precision: str = "fp32", progress: bool | None = False,
                    log: Callable[[str], None] = lambda message: None) -> None:
    """`classes.json` and `classifier.pt` into a version being built: what its latent space means, found with the
    very generator the service will load, and the classifier the service checks class requests with."""
    from trainer.evaluation.class_boundaries import fit_class_semantics
    from trainer.evaluation.fashion_classifier import export_classifier

    semantics = fit_class_semantics(generator, layout, samples, precision=precision, progress=progress, log=log)
    (directory / CLASSES).write_text(semantics.model_dump_json(indent=1) + "\n")
    if torchscript.available():  # the classifier is TorchScript only (see shared.imaging.networks.load_classifier)
        (directory / CLASSIFIER).write_bytes(export_classifier())
