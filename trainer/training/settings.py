"""A run's settings, declared once. The recipe's (`RECIPE_SETTINGS`): each one's name, type, default (the study's
value), help, and value in each preset. The run's (`RUN_SETTINGS`): what it trains on, its networks' size and where
it runs, the same for `python -m trainer` and `python -m trainer.tune`. The training config's fields
(trainer.training.config.TrainConfig), both commands' `--flags`, the manifest's description of a run's recipe and
the docs' flag table (`python -m trainer.training.settings`) are made from them, and `ChosenRecipe.config_fields`
is the one way from a command line to a config's fields.

A new stabiliser is one `Setting` here and its use in `trainer.training.losses` (or `trainer.training.step`): nothing
else lists it.

`study` is the original study's training, exactly, for every architecture; `stable` is the best combination
measured for each one (benchmarks/ablation.py; the measurements, with their commands and machines, are in
docs/results/training.md):
- the plain GAN: EMA, spectral norm and R1, at a learning rate four times the study's;
- the DCGAN: batches of 32, and bf16 where the device computes it natively (it trains faster there, its FID no
  worse); none of the plain GAN's stabilisers beat the study's recipe on it;
- the residual GAN and R3GAN: the recipes of their papers (hinge and spectral norm; the relativistic loss with R1
  and R2), never-tuned starting points that `python -m trainer.tune` searches from;
- a conditional run conditions strongly only with the auxiliary class loss (docs/conditional.md).

`Search` declares where `python -m trainer.tune` looks for a setting's value.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from shared.errors import UserError
from shared.imaging import precision
from shared.store.atomic import atomic_write
from trainer.training.augment import parse_policies
from trainer.training.data import DATASETS

PRESETS = ("study", "stable")
ALIASES = {"seed": "study"}  # the study's recipe was called `seed`: old commands and manifests keep working
# the preset a run gets when it names none: the study's own for the study's networks; `stable` for the others, which
# the study's training does not suit (R3GAN has no normalisation but its penalties)
DEFAULT_PRESET = {"resnet": "stable", "r3gan": "stable"}
LOSSES = ("bce", "hinge", "rpgan")
D_NORMS = ("batch", "spectral", "none")


def _checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], must: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = convert(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {must}, not {text}")
        return value
    parse.__name__ = convert.__name__  # argparse names the type in its "invalid int value" messages
    return parse


positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
positive_float = _checked(float, lambda v: 0 < v < float("inf"), "a positive number")
non_negative = _checked(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
decay = _checked(float, lambda v: 0 <= v < 1, "in [0, 1)")
probability = _checked(float, lambda v: 0 < v <= 1, "in (0, 1]")
fraction = _checked(float, lambda v: 0 <= v <= 1, "in [0, 1]")


def policies(text: str) -> str:
    try:
        return ",".join(parse_policies(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@dataclass(frozen=True)
class Search:
    """Where `python -m trainer.tune` looks for a setting's value: between `low` and `high` (evenly in the
    logarithm with `log`; whole numbers for an int setting), or among `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Setting:
    """One recipe setting. `presets` maps a preset's name to its value per architecture, where it differs from
    `default`; `parse` reads the flag's text (None: a switch, --name/--no-name); `search` is where a tuning run
    looks for it (None: it is not searched)."""

    name: str
    kind: type
    default: Any
    help: str
    parse: Callable[[str], Any] | None = str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    search: Search | None = None
    env: str | None = None  # a run setting's default may come from this environment variable

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def value(self, preset: str, arch: str) -> Any:
        return self.presets.get(preset, {}).get(arch, self.default)


RECIPE_SETTINGS = (
    Setting("loss", str, "bce", "bce (the study's, with the non-saturating G loss), hinge, or rpgan (R3GAN's "
            "relativistic pairing: D judges each real image against a fake)", choices=LOSSES,
            presets={"stable": {"resnet": "hinge", "r3gan": "rpgan"}}, search=Search(choices=LOSSES)),
    Setting("batch_size", int, 128, "images per step and process", positive_int,
            presets={"stable": {"dcgan": 32, "resnet": 64, "r3gan": 64}}, search=Search(choices=(16, 32, 64, 128))),
    Setting("lr_g", float | None, None, "the generator's learning rate (two time scales; unset: --lr)", positive_float,
            presets={"stable": {"gan": 8e-4}}, search=Search(5e-5, 2e-3, log=True)),
    Setting("lr_d", float | None, None, "the discriminator's learning rate (unset: --lr)", positive_float,
            presets={"stable": {"gan": 8e-4}}, search=Search(5e-5, 2e-3, log=True)),
    # not searched: a trial's pruner judges it by FID read before the end of its run, where a decaying rate has
    # not paid off yet
    Setting("lr_decay", float, 0.0, "let both learning rates fall linearly to zero over the last FRACTION of the "
            "run (of its --minutes, else of its epochs; 0: constant, 1: from the first step); a budget lengthened "
            "on --resume stretches the schedule", fraction, metavar="FRACTION"),
    Setting("beta1", float, 0.5, "Adam's beta1 for both nets (0: no momentum, as two-time-scale GANs train)", decay,
            presets={"stable": {"resnet": 0.0, "r3gan": 0.0}}, search=Search(choices=(0.0, 0.5))),
    Setting("beta2", float, 0.999, "Adam's beta2 for both nets", decay,
            presets={"stable": {"r3gan": 0.99}}, search=Search(choices=(0.9, 0.99, 0.999))),
    Setting("ema", float, 0.0, "publish an exponential moving average of G's weights with this decay (e.g. 0.999; "
            "0: off); the raw G stays in the training state", decay, metavar="DECAY",
            presets={"stable": {"gan": 0.999, "resnet": 0.999, "r3gan": 0.999}},
            search=Search(choices=(0.0, 0.99, 0.999, 0.9999))),
    Setting("ema_warmup", bool, True, "ramp the average's decay up as min(DECAY, (1+t)/(10+t)) over its first "
            "updates, so it leaves G's random start quickly", None),
    Setting("ema_kimg", float, 0.0, "a moving average of G whose half-life is K thousand images, and at most 5%% of "
            "the images seen so far (StyleGAN2-ADA's ramp-up); replaces --ema's decay (0: use --ema)", non_negative,
            metavar="K"),
    Setting("spectral_norm", bool, False, "spectral normalisation on every conv/linear layer of D, beside its "
            "BatchNorm (--d-norm spectral replaces the BatchNorm instead)", None, presets={"stable": {"gan": True}}),
    Setting("d_norm", str, "batch", "D's normalisation: batch (the study's BatchNorm), spectral (spectral norm "
            "instead of BatchNorm, the D of Miyato et al.), none; the published D has it baked in (R3GAN's D has "
            "no BatchNorm to keep)", choices=D_NORMS, presets={"stable": {"resnet": "spectral", "r3gan": "none"}}),
    Setting("augment", str, "", "DiffAugment for both players: translation, cutout, or both comma-separated "
            "(none: off)", policies, metavar="POLICIES"),
    Setting("augment_p", float, 1.0, "probability that an image is augmented", probability, metavar="P"),
    Setting("r1", float, 0.0, "R1 gradient penalty on real images, weight GAMMA (0: off)", non_negative,
            metavar="GAMMA", presets={"stable": {"gan": 1.0, "r3gan": 1.0}}, search=Search(0.01, 10.0, log=True)),
    Setting("r2", float, 0.0, "R2 gradient penalty on generated images, weight GAMMA (0: off; R3GAN's recipe "
            "gives it R1's weight)", non_negative, metavar="GAMMA", presets={"stable": {"r3gan": 1.0}},
            search=Search(0.01, 10.0, log=True)),
    Setting("penalty_every", int, 1, "apply R1 and R2 only every K steps, K times as strong (StyleGAN2's lazy "
            "regularisation: their double backward is the dearest part of a step; not with CUDA graphs)",
            positive_int, metavar="K", search=Search(choices=(1, 4, 8))),
    Setting("d_steps", int, 1, "discriminator updates per generator update, each on its own batch (an epoch is then "
            "1/K as many generator updates; one process only)", positive_int, metavar="K"),
    Setting("instance_noise", float, 0.0, "Gaussian noise of this std (pixels in [-1, 1]) on everything D sees, "
            "falling linearly to 0 at the run's last step (0: off)", non_negative, metavar="STD"),
    Setting("lecam", float, 0.0, "LeCam regularisation of D's outputs towards moving anchors, this weight (e.g. 0.3; "
            "0: off)", non_negative, metavar="WEIGHT"),
    Setting("class_loss", float, 0.0, "with --conditional: an auxiliary classification loss of this weight on D's "
            "class scores of real images and of G's fakes (0: off; unconditional runs have none)", non_negative,
            metavar="WEIGHT", presets={"stable": {"gan": 1.0, "dcgan": 1.0, "resnet": 1.0, "r3gan": 1.0}}),
    Setting("precision", str, "fp32", "bf16: forward passes under bfloat16 autocast, weights and optimisers in fp32, "
            "convolutions channels-last; auto: bf16 where the device computes it natively (AMX or AVX512-BF16, "
            "CUDA 8.0+), else fp32; the work after training runs in the same precision", choices=precision.CHOICES,
            presets={"stable": {"dcgan": "auto", "resnet": "auto", "r3gan": "auto"}}),
)
SETTINGS = {s.name: s for s in RECIPE_SETTINGS}

# ---------------------------------------------------------------------- the run's settings
# What a run trains on, how big its networks are and where it runs: the same flags for `python -m trainer` and
# `python -m trainer.tune` (each trial a run), with no preset behind them
CHANNELS = (1, 3)
SIZE_SETTINGS = ("features", "depth", "groups")  # the architecture's size, which a recipe file may set too
RUN_SETTINGS = (
    Setting("seed", int, 0, "random seed; a CPU run with the same seed repeats exactly", int),
    Setting("lr", float, 2e-4, "Adam learning rate of both nets (unless the recipe's --lr-g/--lr-d set theirs)",
            positive_float),
    Setting("dataset", str, "fashion-mnist", "IDX datasets are looked for in --data-dir, then "
            "/usr/share/datasets/fashion-mnist, then downloaded; cifar10 in --data-dir (the unpacked "
            "cifar-10-batches-py), then downloaded by torchvision; 'folder' takes any folder of images, flat or one "
            "subfolder per class (unreadable files are skipped and counted)", choices=DATASETS),
    Setting("data_dir", str | None, None, "dataset folder", env="DATA_DIR"),
    Setting("channels", int | None, None, "1: grey, 3: colour (default: the data's own: FashionMNIST and MNIST grey, "
            "CIFAR-10 colour, a folder colour unless every picture in it is grey)", int, choices=CHANNELS),
    Setting("image_size", int | None, None, "train on square images of this side (default: the architecture's own)",
            positive_int, metavar="PIXELS"),
    Setting("features", int | None, None, "the width of an architecture's layers, to match its cost to the machine "
            "(default: the architecture's own: the plain GAN's hidden layer of 128 units in each net; the DCGAN's "
            "64 channels, from which its layers scale; the resnet's 32, where a step costs about what the DCGAN's "
            "does on a 2-core CPU; R3GAN's 64, halved for each stage past 32x32)", positive_int, metavar="WIDTH"),
    Setting("depth", int | None, None, "residual blocks at each resolution of a residual architecture (default: its "
            "own; r3gan: 1; other architectures: exit 2)", positive_int, metavar="BLOCKS"),
    Setting("groups", int | None, None, "groups of each residual block's 3x3 convolution (r3gan; default: its own, "
            "8; fewer where a block's width does not divide into them; other architectures: exit 2)", positive_int,
            metavar="N"),
    Setting("limit", int | None, None, "train on the first N images only", positive_int, metavar="N"),
    Setting("conditional", bool, False, "class-conditional: G draws the class it is given and D judges each image "
            "with its class (a projection discriminator); the labels are the dataset's (a folder's class "
            "subfolders; fewer than two classes: exit 2)", None),
    Setting("device", str, "auto", "auto (CUDA when available), cpu, cuda or cuda:N", env="DEVICE"),
    Setting("cuda_graphs", str, "auto", "run each full training step as one captured CUDA graph (auto: on when "
            "training on CUDA in a single process; on without CUDA or under torchrun is refused)",
            choices=("auto", "on", "off")),
)
RUN = {s.name: s for s in RUN_SETTINGS}


def _dataclass(name: str, declared: tuple[Setting, ...], doc: str) -> type:
    made = dataclasses.make_dataclass(name, [(s.name, s.kind, field(default=s.default)) for s in declared],
                                      frozen=True)
    made.__doc__ = doc
    return made


# the declared parts of a run's config; trainer.training.config.TrainConfig adds what the commands set
RecipeSettings = _dataclass("RecipeSettings", RECIPE_SETTINGS, "The recipe's settings (RECIPE_SETTINGS), with the "
                                                               "study's defaults.")
RunSettings = _dataclass("RunSettings", RUN_SETTINGS, "The run's settings (RUN_SETTINGS), with their defaults.")


def canonical(preset: str) -> str:
    return ALIASES.get(preset, preset)


def recipe_settings(preset: str, arch: str, conditional: bool = False, **overrides: Any) -> dict[str, Any]:
    """The config fields of `preset` for `arch`, with every override that is not None. A preset's class loss is
    for conditional runs: an unconditional one has no class scores to train."""
    preset = canonical(preset)
    if preset not in PRESETS:
        raise ValueError(f"unknown recipe {preset!r}; choose one of {', '.join(PRESETS)}")
    values = {s.name: s.value(preset, arch) for s in RECIPE_SETTINGS}
    if not conditional:
        values["class_loss"] = 0.0
    values.update({k: v for k, v in overrides.items() if v is not None})
    return {"recipe": preset, **values}


# ---------------------------------------------------------------------- recipe files
RECIPE_FORMAT = "latentlab-recipe/1"
SHIPPED_RECIPES = Path(__file__).parents[1] / "recipes"  # tuned recipes that come with latentlab, by name


class RecipeError(UserError):
    """A recipe file that cannot be read or does not fit the run."""


@dataclass(frozen=True)
class RecipeFile:
    """A recipe in a file, as `python -m trainer.tune` writes its best trial: the preset it starts from, the
    settings it changes, the architecture's size, and where it came from (the study, trial, and its reading)."""

    name: str
    arch: str
    base: str
    settings: dict[str, Any]
    size: dict[str, int] = field(default_factory=dict)
    tuned: dict[str, Any] = field(default_factory=dict)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_write(path, "w") as f:
            f.write(json.dumps({"format": RECIPE_FORMAT, **dataclasses.asdict(self)}, indent=2) + "\n")
        return path


def recipe_file(name: str) -> Path | None:
    """The recipe file `--recipe name` means: a path to a .json file, or the name of one latentlab ships
    (trainer/recipes/); None for a preset."""
    if canonical(name) in PRESETS:
        return None
    path = Path(name)
    if path.suffix == ".json" or path.is_file():
        return path
    if (SHIPPED_RECIPES / f"{name}.json").is_file():
        return SHIPPED_RECIPES / f"{name}.json"
    shipped = sorted(p.stem for p in SHIPPED_RECIPES.glob("*.json"))
    raise RecipeError(f"unknown recipe {name!r}: give a preset ({', '.join(PRESETS)}), a recipe file's path, or "
                      f"one latentlab ships ({', '.join(shipped) or 'none'})")


def read_recipe_file(path: Path) -> RecipeFile:
    """The recipe in `path`, every setting in it checked as its flag would be."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RecipeError(f"recipe file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecipeError(f"recipe file {path} is not readable JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != RECIPE_FORMAT:
        raise RecipeError(f"{path} is not a latentlab recipe file (no \"format\": \"{RECIPE_FORMAT}\")")
    try:
        recipe = RecipeFile(**{k: v for k, v in data.items() if k != "format"})
    except TypeError as e:
        raise RecipeError(f"recipe file {path}: {e}") from None
    for name, value in recipe.settings.items():
        check_setting(name, value, f"recipe file {path}")
    for name, value in recipe.size.items():
        if name not in SIZE_SETTINGS or not (isinstance(value, int) and value >= 1):
            raise RecipeError(f"recipe file {path}: size {name}={value!r} is not one of {', '.join(SIZE_SETTINGS)} "
                              "with a positive whole number")
    if canonical(recipe.base) not in PRESETS:
        raise RecipeError(f"recipe file {path}: its base {recipe.base!r} is not a preset ({', '.join(PRESETS)})")
    return recipe


@dataclass(frozen=True)
class ChosenRecipe:
    """What `--recipe` (and `--arch`) chose: a preset, or a recipe file with the preset it starts from."""

    arch: str | None
    preset: str
    name: str  # the preset's, or the file's
    settings: dict[str, Any] = field(default_factory=dict)  # what the file changes in its preset
    size: dict[str, int] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # the file, and the study and trial it came from

    def config_fields(self, args: argparse.Namespace, drawn: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A run's config fields from the command line `args` that chose this recipe: every run setting the
        command has a flag for, then each recipe setting and the architecture's size from, in order, the preset,
        the file, the command line and `drawn` (a tuning trial's choices)."""
        chosen = {**given(args), **(drawn or {})}
        size = {k: chosen.pop(k, self.size.get(k)) for k in SIZE_SETTINGS}
        run = {s.name: getattr(args, s.name) for s in RUN_SETTINGS if s.name not in size and hasattr(args, s.name)}
        values = recipe_settings(self.preset, self.arch, run.get("conditional", False), **{**self.settings, **chosen})
        return {**run, **size, **values, "recipe": self.name, "recipe_source": self.source}


def resolve_recipe(text: str | None, arch: str | None) -> ChosenRecipe:
    """`--recipe text` for `--arch arch` (either may be None: the architecture's default preset; the file's
    architecture)."""
    path = recipe_file(text) if text else None
    if path is None:
        preset = canonical(text) if text else DEFAULT_PRESET.get(arch or "", "study")
        return ChosenRecipe(arch, preset, preset)
    recipe = read_recipe_file(path)
    if arch and arch != recipe.arch:
        raise RecipeError(f"recipe file {path} is for {recipe.arch}, not --arch {arch}: leave --arch out, or give a "
                          f"recipe for {arch}")
    return ChosenRecipe(recipe.arch, canonical(recipe.base), recipe.name, recipe.settings, recipe.size,
                        {"file": path.name, **recipe.tuned})


def check_setting(name: str, value: Any, where: str) -> None:
    """Refuse a value its flag would refuse."""
    setting = SETTINGS.get(name)
    if setting is None:
        raise RecipeError(f"{where}: {name!r} is not a recipe setting (python -m trainer --help lists them)")
    if value is None or setting.parse is None:
        if not (value is None or isinstance(value, bool)):
            raise RecipeError(f"{where}: {name} must be true or false, not {value!r}")
        return
    try:
        parsed = setting.parse(str(value))
    except (argparse.ArgumentTypeError, ValueError) as e:
        raise RecipeError(f"{where}: {name}: {e}") from None
    if setting.choices and parsed not in setting.choices:
        raise RecipeError(f"{where}: {name} must be one of {', '.join(setting.choices)}, not {value!r}")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """One flag per recipe setting. Unset flags stay out of the namespace, so the preset's (or the recipe file's)
    value stands."""
    for s in RECIPE_SETTINGS:
        _add(group, s, argparse.SUPPRESS, f"{s.help} ({_defaults(s)})")


def add_run_arguments(group: argparse._ArgumentGroup, names: tuple[str, ...] = tuple(RUN),
                      more_help: Mapping[str, str] | None = None) -> None:
    """The flags of the run settings `names`, each defaulting to its environment variable, else its default (a size
    setting's is unset: the architecture's own, or a recipe file's)."""
    for name in names:
        s = RUN[name]
        default = os.environ.get(s.env, s.default) if s.env else s.default
        help = s.help + (more_help or {}).get(name, "") + (f" (env {s.env})" if s.env else "")
        # unset is explained by the help itself; an empty %(default) keeps argparse from adding "(default: None)"
        _add(group, s, default, help if default is not None else help + "%(default).0s")


def _add(group: argparse._ArgumentGroup, s: Setting, default: Any, help: str) -> None:
    kwargs: dict[str, Any] = {"default": default, "help": help}
    if s.parse is None:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs.update(type=s.parse, choices=s.choices, metavar=s.metavar)
    group.add_argument(s.flag, **kwargs)


def given(namespace: argparse.Namespace) -> dict[str, Any]:
    """The recipe settings, and the architecture's size, that the command line set."""
    values = {s.name: getattr(namespace, s.name) for s in RECIPE_SETTINGS if hasattr(namespace, s.name)}
    for name in SIZE_SETTINGS:
        if getattr(namespace, name, None) is not None:
            values[name] = getattr(namespace, name)
    return values


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "unset" if value is None else "none" if value == "" else str(value)


def _defaults(s: Setting) -> str:
    differs = [f"{preset} for {arch}: {_shown(v)}" for preset, per_arch in s.presets.items()
               for arch, v in per_arch.items()]
    return "; ".join([f"study: {_shown(s.default)}", *differs])


def _flag(s: Setting) -> str:
    return s.flag if s.parse is not None else f"{s.flag}, --no-{s.flag[2:]}"


def markdown_table() -> str:
    """The docs' table of the recipe's flags."""
    lines = ["| flag | what it sets | study | stable |", "|---|---|---|---|"]
    for s in RECIPE_SETTINGS:
        stable = ", ".join(f"{arch}: {_shown(v)}" for arch, v in s.presets.get("stable", {}).items()) or "as study"
        lines.append(f"| `{_flag(s)}` | {s.help.replace('%%', '%')} | {_shown(s.default)} | {stable} |")
    return "\n".join(lines) + "\n"


def run_markdown_table() -> str:
    """The docs' table of the run's flags."""
    lines = ["| flag | default | what it sets |", "|---|---|---|"]
    for s in RUN_SETTINGS:
        default = "unset" if s.default is None else f"`{_shown(s.default)}`"
        default = f"env `{s.env}`, else {default}" if s.env else default
        flag = _flag(s) + (f" {{{','.join(map(str, s.choices))}}}" if s.choices else "")
        lines.append(f"| `{flag}` | {default} | {s.help.replace('%%', '%')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
