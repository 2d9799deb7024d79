"""`latentlab`: the client's methods as commands. Pictures go to files, everything else prints as JSON.

Exit status: 0 done; 1 the service refused the request (its reason is printed); 2 a usage error; 3 the
service could not be reached, or stayed too busy, within the retries.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
from pathlib import Path

import numpy as np

from latentlab.client import FORM_SUFFIXES, Client
from latentlab.errors import APIConnectionError, APIStatusError, ServiceUnavailableError
from latentlab.retry import RetryPolicy

EPILOG = """examples:
  latentlab generate --model dcgan --seed 0 -o samples.png
  latentlab generate --model dcgan --class Trouser --count 8 --scale 4 -o trousers.png
  latentlab sweep --model dcgan --dims 5 10 20 50 90 --values -3 -1.5 0 1.5 3 -o sweep.png
  latentlab interpolate --model dcgan --start 0:0 --end 0:1 --steps 24 --format gif -o path.gif
  latentlab sweep --model dcgan-cond --classes Shirt Dress Coat -o style-by-class.png  # a conditional model
  latentlab interpolate --model dcgan-cond --start 0:0:Shirt --end 0:0:Dress -o shirt-to-dress.png
  latentlab project --model dcgan shirt.png --steps 200 > latent.json
  latentlab models

The service is LATENTLAB_URL (default http://127.0.0.1:8000); its key, when it needs one, LATENTLAB_API_KEY.
Exit status: 0 done, 1 the service refused the request, 2 usage error, 3 service unreachable or too busy."""


def _latent_file(path: str) -> np.ndarray:
    """A latent (or several) from a .npy file or a JSON list; a `latentlab project` answer works as is."""
    try:
        if path.endswith(".npy"):
            return np.load(path)
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"cannot read a latent from {path}: {e}") from None
    return np.asarray(value["latent"] if isinstance(value, dict) else value, dtype=np.float64)


def _latent_ref(text: str):
    """SEED:INDEX, SEED:INDEX:CLASS (a class-conditional model), or a latent file."""
    seed, sep, rest = text.partition(":")
    index, sep2, cls = rest.partition(":")
    if sep and seed.isdigit() and index.isdigit():
        return (int(seed), int(index), _class_ref(cls)) if sep2 and cls else (int(seed), int(index))
    return _latent_file(text)


def _class_ref(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def _version(text: str) -> str | int:
    if text == "latest" or text.isdigit():
        return text if text == "latest" else int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: give `latest` or a version number")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentlab", description="Talk to a latentlab service: generate images, sweep "
                                "latent coordinates, project pictures, list models.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="the service (default: LATENTLAB_URL, else http://127.0.0.1:8000)")
    p.add_argument("--api-key", help="its API key (default: LATENTLAB_API_KEY)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for each try (default 60)")
    p.add_argument("--retries", type=int, default=4, help="tries again after a 503 or a lost connection, honouring "
                                                          "Retry-After (default 4)")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, image: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        if image is not None:
            sub.add_argument("-o", "--output", help=f"file to write (default {image})")
        return sub

    def model(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model", required=True, help="model name (latentlab models lists them)")
        sub.add_argument("--version", type=_version, default="latest", help="a version number, or latest")

    def grid(sub: argparse.ArgumentParser, nrow: bool = True) -> None:
        sub.add_argument("--padding", type=int, default=2, help="pixels between images (default 2)")
        sub.add_argument("--scale", type=int, default=1, help="whole-pixel enlargement (default 1)")
        sub.add_argument("--truncation", type=float, help="pull latents towards the mean by this factor (0, 1]")
        if nrow:
            sub.add_argument("--nrow", type=int, default=8, help="images per row (default 8)")

    def source(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--seed", type=int, help="draw the latents from this seed (the same on every machine)")
        sub.add_argument("--count", type=int, help="how many latents to draw (default 8)")
        sub.add_argument("--latent", type=_latent_file, metavar="FILE",
                         help="latents from a .npy file or a JSON list (or a `latentlab project` answer)")

    g = command("generate", "a PNG grid of images from a seed, given latents, or of a class (with neither --seed nor "
                "--latent: a random seed, printed)", "generate.png")
    model(g), source(g), grid(g)
    g.add_argument("--class", dest="class_", metavar="CLASS", type=_class_ref,
                   help="only images of this class (a name or an index)")

    s = command("sweep", "the study's sweep: latent coordinates (or directions, classes) one at a time", "sweep.png")
    model(s), source(s), grid(s, nrow=False)
    along = s.add_mutually_exclusive_group()
    along.add_argument("--dims", type=int, nargs="+", help="latent coordinates (default the study's 5 10 20 50 90)")
    along.add_argument("--directions", type=int, nargs="+", help="SeFa directions by rank instead")
    along.add_argument("--classes", type=_class_ref, nargs="+", help="move towards these classes instead")
    s.add_argument("--values", type=float, nargs="+", help="one row per value (default -3 -1.5 0 1.5 3)")
    s.add_argument("--mode", choices=["set", "add"], default="set", help="set the coordinate, or add to it")
    s.add_argument("--no-labels", dest="labels", action="store_false", help="no row labels")

    i = command("interpolate", "the path between two latents: a grid, or a looping GIF/WebP",
                "interpolate.png, .gif or .webp")
    model(i), grid(i, nrow=False)
    i.add_argument("--start", type=_latent_ref, required=True,
                   help="SEED:INDEX, SEED:INDEX:CLASS (a class-conditional model: that z as that class), or a latent file")
    i.add_argument("--end", type=_latent_ref, required=True, help="as --start")
    i.add_argument("--steps", type=int, default=8, help="images along the path, both ends included (default 8)")
    i.add_argument("--method", choices=["slerp", "lerp"], default="slerp")
    i.add_argument("--format", choices=["png", "gif", "webp"], default="png")
    i.add_argument("--frame-ms", type=int, default=100, help="milliseconds per animation frame (default 100)")

    pr = command("project", "the latent of a picture (JSON), or with -o the picture beside its reconstruction")
    model(pr)
    pr.add_argument("picture", help="a PNG, JPEG or any picture")
    pr.add_argument("--steps", type=int, default=100, help="optimisation steps after the encoder's guess (default 100)")
    pr.add_argument("--seed", type=int, default=0, help="seed of the search's noise (default 0)")
    pr.add_argument("-o", "--output", help="write the picture beside its reconstruction here instead of the JSON")
    pr.add_argument("--scale", type=int, default=1, help="enlargement of that picture (default 1)")
    pr.add_argument("--class", dest="class_", metavar="CLASS", type=_class_ref,
                    help="a class-conditional model: the picture's class, held while z is searched (default: the "
                         "class the model's classifier sees)")

    sc = command("score", "the discriminator's judgement of pictures (JSON)")
    model(sc)
    sc.add_argument("pictures", nargs="+", help="PNG, JPEG or any pictures")
    sc.add_argument("--class", dest="class_", metavar="CLASS", type=_class_ref,
                    help="a class-conditional model: the pictures' class (default: each one's, as the model's "
                         "classifier sees it)")

    command("models", "the models in the store, their versions and manifests (JSON)")
    h = command("history", "a version's training curves, step by step (JSON)")
    model(h)
    h.add_argument("--every", type=int, default=1, help="keep every N-th step (default 1)")
    d = command("directions", "a version's strongest latent directions, SeFa (JSON)")
    model(d)
    d.add_argument("-k", type=int, default=10, help="how many (default 10)")
    c = command("classes", "the classes a version's latent space holds (JSON)")
    model(c)
    cl = command("class-latents", "the latents a class request draws (JSON)")
    model(cl)
    cl.add_argument("class_", metavar="CLASS", type=_class_ref, help="a class name or index")
    cl.add_argument("--seed", type=int, default=0)
    cl.add_argument("--count", type=int, default=8)
    cl.add_argument("--truncation", type=float)
    la = command("latents", "the latent behind image INDEX of a seed's grid (JSON)")
    la.add_argument("--seed", type=int, required=True)
    la.add_argument("--index", type=int, default=0)
    la.add_argument("--dim", type=int, default=100, help="the model's latent_dim (default 100)")
    la.add_argument("--classes", type=int, default=0,
                    help="a class-conditional model's number of classes: its latents end in a one-hot (default 0)")
    dl = command("download", "one network of a version in one form, as the store holds it (ONNX by default)")
    dl.add_argument("--model", required=True, help="model name (latentlab models lists them)")
    dl.add_argument("--version", type=int, required=True, help="a version number")
    dl.add_argument("--form", choices=sorted(FORM_SUFFIXES), default="onnx", help="the file's form (default onnx)")
    dl.add_argument("--network", choices=("generator", "discriminator", "encoder"), default="generator",
                    help="which network (default generator)")
    dl.add_argument("-o", "--output", help="file to write (default NETWORK.SUFFIX, e.g. generator.onnx)")
    command("health", "whether the service is ready, and what it has loaded (JSON)")
    return p


def _latents(args: argparse.Namespace) -> dict:
    if args.latent is None:
        return {"seed": args.seed, "count": args.count}
    return {"latent": args.latent} if args.latent.ndim == 1 else {"latents": args.latent}


def run(client: Client, args: argparse.Namespace):
    """The command's answer: an ImageResult to write, or something to print as JSON."""
    grid = {"padding": args.padding, "scale": args.scale, "truncation": args.truncation} if "padding" in args else {}
    match args.command:
        case "generate":
            if args.seed is None and args.latent is None:  # a CLI picks the seed itself, and says which
                args.seed = secrets.randbelow(2**31)
                print(f"seed {args.seed} (the same images again: --seed {args.seed})", file=sys.stderr)
            return client.generate(args.model, **_latents(args), class_=args.class_, nrow=args.nrow, **grid,
                                   version=args.version)
        case "sweep":
            return client.sweep(args.model, **_latents(args), dims=args.dims, directions=args.directions,
                                classes=args.classes, values=args.values, mode=args.mode, labels=args.labels, **grid,
                                version=args.version)
        case "interpolate":
            return client.interpolate(args.model, args.start, args.end, steps=args.steps, method=args.method,
                                      format=args.format, frame_ms=args.frame_ms, **grid, version=args.version)
        case "project" if args.output:
            return client.project_image(args.model, args.picture, steps=args.steps, seed=args.seed, scale=args.scale,
                                        class_=args.class_, version=args.version)
        case "project":
            found = client.project(args.model, args.picture, steps=args.steps, seed=args.seed, class_=args.class_,
                                   version=args.version)
            answer = {**found.__dict__, "latent": found.latent.tolist()}
            klass = answer.pop("class_")
            return answer if klass is None else {**answer, "class": klass}
        case "score":
            return client.score(args.model, args.pictures, class_=args.class_, version=args.version)
        case "models":
            return client.models()
        case "history":
            found = client.history(args.model, every=args.every, version=args.version)
            return {**found.__dict__, "steps": {k: v.tolist() for k, v in found.steps.items()}}
        case "directions":
            found = client.directions(args.model, k=args.k, version=args.version)
            return {**found.__dict__, "eigenvalues": found.eigenvalues.tolist(), "vectors": found.vectors.tolist()}
        case "classes":
            return client.classes(args.model, version=args.version)
        case "class-latents":
            found = client.class_latents(args.model, args.class_, seed=args.seed, count=args.count,
                                         truncation=args.truncation, version=args.version)
            return {**found.__dict__, "latents": found.latents.tolist()}
        case "latents":
            return {"seed": args.seed, "index": args.index,
                    "latent": client.latents(args.seed, args.index, dim=args.dim, classes=args.classes).tolist()}
        case "download":
            data = client.download(args.model, args.version, args.form, args.network)
            output = args.output or args.network + FORM_SUFFIXES[args.form]
            Path(output).write_bytes(data)
            return {"model": args.model, "version": args.version, "file": output, "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest()}
        case "health":
            return client.health()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    try:
        with Client(args.url, args.api_key, timeout=args.timeout, retry=RetryPolicy(attempts=args.retries + 1)) as client:
            answer = run(client, args)
    except ServiceUnavailableError as e:
        print(f"latentlab: the service is busy or not ready ({e.message}); try again later", file=sys.stderr)
        return 3
    except APIStatusError as e:
        print(f"latentlab: the service refused the request: {e}", file=sys.stderr)
        return 1
    except APIConnectionError as e:
        print(f"latentlab: cannot reach the service: {e}\n  start one with `latentlab-serve`, or point "
              "--url / LATENTLAB_URL at it", file=sys.stderr)
        return 3
    except OSError as e:  # a picture or output file
        print(f"latentlab: {e}", file=sys.stderr)
        return 1
    if hasattr(answer, "save"):
        output = args.output or f"{args.command}.{answer.media_type.split('/')[-1]}"
        answer.save(output)
        print(f"wrote {output}: {len(answer.images)} images from {answer.model} v{answer.version}", file=sys.stderr)
    else:
        try:
            print(json.dumps(answer, indent=2))
        except BrokenPipeError:  # `latentlab models | head`: the reader has what it wanted
            sys.stderr.close()
    return 0
