"""`python -m trainer`: train one of the study's architectures, publish it to the model store, print the version's path."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from shared.errors import UserError, command
from shared.imaging.devices import resolve_device
from shared.store import Store, StoreWriteFailed, validate_name
from trainer.evaluation.evaluator import check_samples, evaluate_version
from trainer.publishing.encoder import EncoderResult, fit_encoder
from trainer.publishing.publish import publish_run
from trainer.training import distributed, settings
from trainer.training.architectures import ARCHITECTURES, run_architecture
from trainer.training.board import Board
from trainer.training.config import TrainConfig
from trainer.training.loop import TrainResult, train
from trainer.training.settings import ChosenRecipe, positive_float, positive_int
from trainer.training.state import mark_published

PROG = "python -m trainer"
EXIT_INTERRUPTED = 130


MAX_EPOCHS = 100_000  # --minutes without --epochs: the time budget ends the run long before this


def build_parser() -> argparse.ArgumentParser:
    archs = "; ".join(f"{a.name}: {a.description}" for a in ARCHITECTURES.values())
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train one of latentlab's GANs and publish it to the model store as a new version "
                    "(TorchScript generator and discriminator, manifest, report figures). "
                    "Prints the published version's path on success.",
        epilog="Exit codes: 0 published; 1 a write failed (disk full: the store and the last saved state are intact, "
               "free space and run again with --resume); 2 bad input (flags, data, names); 130 interrupted (state "
               "saved, resume with --resume). Example: python -m trainer --arch gan --epochs 1 --out ./models",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), help=f"architecture ({archs}); may be left to a recipe "
                                                                  "file that names one")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="train until this many epochs are done (with --minutes: at most this many)")
    p.add_argument("--minutes", type=positive_float, default=None, metavar="M",
                   help="train for M minutes instead: the run stops at the end of the step in which M minutes of "
                        "training (not counting measurements) have passed, then publishes; --resume continues a "
                        "budget cut short")
    p.add_argument("--out", default=os.environ.get("MODEL_DIR", "./models"),
                   help="model store directory (env MODEL_DIR)")
    p.add_argument("--name", default=None, help="model name in the store (default: the architecture's name); "
                                                "1-64 of a-z 0-9 . _ -")
    r = p.add_argument_group("recipe", "How the nets learn, apart from the architecture: a preset (study: the "
                                       "original study's training, exactly; stable: the best settings measured for "
                                       "each architecture) whose settings each flag overrides. Recorded in the "
                                       "manifest.")
    r.add_argument("--recipe", default=None, metavar="PRESET|FILE",
                   help="a preset: study or stable (seed: the same as study; default: study, or stable for the "
                        "architectures the study did not have, resnet and r3gan); or a recipe file from python -m "
                        "trainer.tune, by its path or by the name of one latentlab ships ("
                        + (", ".join(sorted(p.stem for p in settings.SHIPPED_RECIPES.glob("*.json"))) or "none yet")
                        + "): its settings and size, each flag overriding them")
    settings.add_arguments(r)
    settings.add_run_arguments(p.add_argument_group("run", "What the run trains on, how big its networks are and "
                                                          "where it runs"), more_help={"image_size": "; " + "; ".join(
        f"{a.name} takes {', '.join(map(str, a.sizes))}" for a in ARCHITECTURES.values())})
    p.add_argument("--run-dir", default=None,
                   help="where the training state is saved after every epoch (default: OUT/.runs/NAME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the unfinished run in --run-dir up to --epochs (its saved settings are kept); "
                        "starts a new run if there is none")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, one log line per epoch")
    p.add_argument("--no-evaluate", action="store_true",
                   help="do not measure the published version (the SWD against the dataset's test images; for "
                        "FashionMNIST also FID, KID, precision/recall, class coverage; recorded in its manifest; see "
                        "python -m trainer.evaluate)")
    p.add_argument("--eval-samples", type=positive_int, default=None, metavar="N",
                   help="generated images the evaluation measures (default: scaled with the run, from 2,000 for a quick "
                        "look to 10,000 at 300,000 training images, i.e. 5 epochs of FashionMNIST, and beyond)")
    p.add_argument("--no-classes", action="store_true",
                   help="do not find what the latent space means (classes.json, classifier.pt: class requests, class "
                        "sweeps, truncation towards a class; FashionMNIST models only)")
    p.add_argument("--class-samples", type=positive_int, default=None, metavar="N",
                   help="generated images labelled to find each class's direction in latent space (default: scaled "
                        "with the run, from 2,000 to 20,000 at 300,000 training images and beyond)")
    p.add_argument("--no-encoder", action="store_true",
                   help="do not fit an encoder (image -> latent) for the new version; POST /project then starts its "
                        "search from the mean latent")
    p.add_argument("--encoder-steps", type=positive_int, default=None, metavar="N",
                   help="steps of the encoder fitted after training (default: scaled with the run, from 100 to 1,000 "
                        "at 300,000 training images and beyond; 1,000 take about 140 s for the DCGAN, 45 s for the "
                        "plain GAN on a 2-core CPU in fp32); a run interrupted during them resumes there")
    p.add_argument("--tensorboard", metavar="DIR", default=os.environ.get("TENSORBOARD_DIR") or None,
                   help="write TensorBoard events here while training (env TENSORBOARD_DIR): losses and D's outputs "
                        "every 10 steps, the fixed latents' samples every epoch, the settings, and the metrics; a "
                        "resumed run appends to the same curves. View with `tensorboard --logdir DIR`")
    p.add_argument("--eval-every", type=positive_int, default=None, metavar="N",
                   help="also measure the generator every N epochs while training (SWD; for FashionMNIST also FID, "
                        "KID, precision/recall, class coverage; 15-40 s each on a CPU); the curve goes into the "
                        "version's report (quality.csv, quality.png) and manifest")
    return p


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs is None and args.minutes is None:
        parser.error("say how long to train: --epochs N, or --minutes M")
    recipe = settings.resolve_recipe(args.recipe, args.arch)
    if recipe.arch is None:
        parser.error("say which architecture to train: --arch, or a --recipe file that names one")
    name = validate_name(args.name or recipe.arch)
    if (not args.no_evaluate or args.eval_every) and args.eval_samples is not None:
        check_samples(args.eval_samples)  # now, not after hours of training

    ranks = distributed.from_environment()  # torchrun sets these; a plain run is rank 0 of 1
    say = log if ranks.is_main else (lambda message: None)
    cfg = run_config(args, recipe, name, ranks.world_size)
    if cfg.class_loss and not cfg.conditional:
        parser.error("--class-loss trains D's class scores, which only a --conditional run has")
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.out) / ".runs" / name

    distributed.init(ranks, resolve_device(cfg.device))  # a resumed run keeps the command line's device
    result = train(cfg, run_dir, resume=args.resume, log=say, progress=False if args.no_progress else None,
                   ranks=ranks, tensorboard=args.tensorboard)
    if result.interrupted:
        distributed.finish(ranks)
        return EXIT_INTERRUPTED
    try:
        if not ranks.is_main:
            return 0  # rank 0 publishes; finish() below waits for it
        encoder = None
        if result.config.encoder_steps:  # counts left open are set by now, for the run's size
            arch = run_architecture(result.config)
            encoder = fit_encoder(result.generator, result.config, run_dir, arch, torch.device(result.device),
                                  log=say, progress=False if args.no_progress else None)
            if encoder.interrupted:
                return EXIT_INTERRUPTED
        invocation = [parser.prog, *(argv if argv is not None else sys.argv[1:])]
        return publish_and_evaluate(Store(args.out), result, run_dir, invocation, args, encoder)
    finally:
        distributed.finish(ranks)  # waits for rank 0's publishing


def run_config(args: argparse.Namespace, recipe: ChosenRecipe, name: str, world_size: int) -> TrainConfig:
    """The run the command line asks for (`trainer.training.loop.resolve` takes it to the run that trains)."""
    return TrainConfig(arch=recipe.arch, name=name, epochs=args.epochs or MAX_EPOCHS, minutes=args.minutes,
                       world_size=world_size, eval_every=args.eval_every or 0, eval_samples=args.eval_samples,
                       class_samples=0 if args.no_classes else args.class_samples,
                       encoder_steps=0 if args.no_encoder else args.encoder_steps, **recipe.config_fields(args))


def publish_and_evaluate(store: Store, result: TrainResult, run_dir: Path, invocation: list[str],
                         args: argparse.Namespace, encoder: EncoderResult | None = None) -> int:
    """Rank 0's part after training: the new version, its mark in the run directory, its metrics."""
    progress = False if args.no_progress else None
    try:
        version = publish_run(store, result, command=invocation, encoder=encoder, log=log, progress=progress)
    except StoreWriteFailed as e:  # exit 1; the trained state is saved
        raise StoreWriteFailed(f"{e}. Free some space, then run the same command with --resume: it publishes "
                               "without training again") from e
    mark_published(run_dir, version.version)
    trained = result.config
    log(f"published {version.name} v{version.version} "
        f"({result.seconds:.1f}s of training, {result.seconds / max(1, len(result.history) / result.iterations_per_epoch):.1f}s per epoch)")
    if not args.no_evaluate:
        try:
            record = evaluate_version(store, version, trained.eval_samples, device=trained.device,
                                      data_dir=trained.data_dir, log=log, precision=trained.precision,
                                      progress=progress)
            if args.tensorboard:
                board = Board(args.tensorboard, result.iterations_per_epoch, 0)
                board.metrics(record, board.at(trained.epochs), prefix="evaluation")
                board.close()
        except UserError as e:  # the version stands without its numbers: say so, and how to add them
            log(f"warning: {version.name} v{version.version} is published but was not evaluated: {e}; "
                f"measure it later with python -m trainer.evaluate --store {args.out} --model {version.name}")
    print(version.path)
    return 0
