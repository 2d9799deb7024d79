"""`Client` and `AsyncClient`: one method per route of the service, typed results, typed errors, retries.

Each route's method is written once (`Routes`): it describes the request as a `Call`, and the client's `_send`
runs it, which the sync client does at once and the async client as a coroutine (so its methods are awaited).
"""
from __future__ import annotations

import asyncio
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import httpx
import numpy as np
from PIL import Image

from latentlab.errors import APIConnectionError, APITimeoutError, parse_retry_after, status_error
from latentlab.results import ImageResult
from latentlab.retry import RETRY_STATUSES, Attempts, RetryPolicy

# the store's file of a network in each form: `<network><suffix>` (the client imports no server code to ask)
FORM_SUFFIXES = {"onnx": ".onnx", "export": ".pt2", "torchscript": ".pt"}
DEFAULT_URL = "http://127.0.0.1:8000"
Version = Union[int, str]
Vector = Union[Sequence[float], np.ndarray]
LatentRef = Union[Vector, tuple[int, int], tuple[int, int, Union[str, int]], dict]  # a latent, (seed, index),
#   (seed, index, class) on a class-conditional version, or the API's {"seed": .., "index": .., "class": ..}
Picture = Union[str, Path, bytes, Image.Image, np.ndarray]


@dataclass(frozen=True)
class Directions:
    """GET /models/{name}/directions: the generator's strongest latent directions (SeFa)."""

    model: str
    version: int
    layer: str
    eigenvalues: np.ndarray  # (k,), descending
    vectors: np.ndarray  # (k, latent_dim) unit vectors, orthogonal


@dataclass(frozen=True)
class History:
    """GET /models/{name}/history: a version's training curves."""

    model: str
    version: int
    iterations_per_epoch: int | None
    steps: dict[str, np.ndarray]  # iteration, epoch, loss_D, loss_G, D_x, D_G_z: one value per (kept) step
    quality: list[dict]  # what --eval-every measured, epoch by epoch


@dataclass(frozen=True)
class ClassLatents:
    """GET /models/{name}/classes/{class}/latents: the latents a class request draws."""

    model: str
    version: int
    class_: str
    seed: int
    latents: np.ndarray  # (count, latent_dim)
    verified: int


@dataclass(frozen=True)
class Projection:
    """POST /project: where a picture lives in latent space."""

    model: str
    version: int
    latent: np.ndarray  # (latent_dim,): pass it to generate(latent=...) or sweep(latent=...)
    start: str
    steps: int
    seconds: float
    losses: dict[str, dict[str, float]]
    class_: str | None = None  # a class-conditional version's: the class held during the search


@dataclass
class Call:
    """One request, and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], Any]
    json: dict | None = None
    params: dict | None = None
    data: dict | None = None
    files: list | None = None
    options: dict = field(default_factory=dict)

    def request(self) -> dict:
        return {k: v for k, v in {"json": self.json, "params": self.params, "data": self.data,
                                  "files": self.files}.items() if v is not None}


def _fields(**values) -> dict:
    """A request body without the fields left out (the service refuses null for them), arrays as lists."""
    return {k.rstrip("_"): (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in values.items() if v is not None}


def _form(**values) -> dict:
    """A multipart form's fields as text, without those left out."""
    return {k.rstrip("_"): str(v) for k, v in values.items() if v is not None}


def _latent_ref(ref: LatentRef) -> dict:
    if isinstance(ref, dict):
        return ref
    if isinstance(ref, tuple) and len(ref) == 2 and all(isinstance(v, (int, np.integer)) for v in ref):
        return {"seed": int(ref[0]), "index": int(ref[1])}
    if isinstance(ref, tuple) and len(ref) == 3 and all(isinstance(v, (int, np.integer)) for v in ref[:2]):
        return {"seed": int(ref[0]), "index": int(ref[1]), "class": ref[2]}
    return {"latent": np.asarray(ref, dtype=np.float64).tolist()}


def _upload(picture: Picture, name: str) -> tuple[str, bytes, str]:
    """(filename, bytes, media type) of a path, bytes, PIL image or uint8 array (H, W) / (H, W, C)."""
    if isinstance(picture, (str, Path)):
        return Path(picture).name, Path(picture).read_bytes(), "application/octet-stream"
    if isinstance(picture, bytes):
        return name, picture, "application/octet-stream"
    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(picture.squeeze(-1) if picture.ndim == 3 and picture.shape[-1] == 1 else picture)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return f"{name}.png", buffer.getvalue(), "image/png"


def _images(scale: int = 1) -> Callable[[httpx.Response], ImageResult]:
    return lambda r: ImageResult.from_response(r.content, dict(r.headers), scale)


def _json(r: httpx.Response) -> Any:
    return r.json()


class Routes:
    """The service's routes as methods. Image routes return an `ImageResult`; errors raise an `APIStatusError`."""

    def _send(self, call: Call):  # pragma: no cover - the clients define it
        raise NotImplementedError

    # -------------------------------------------------------------- images
    def generate(self, model: str, *, seed: int | None = None, count: int | None = None, latent: Vector | None = None,
                 latents: Sequence[Vector] | np.ndarray | None = None, class_: str | int | None = None,
                 truncation: float | None = None, nrow: int = 8, padding: int = 2, scale: int = 1,
                 version: Version = "latest") -> ImageResult:
        """Images from latents: `count` drawn from `seed` (the same on every machine), or `latent`/`latents` as
        given; with `class_` (a name like "Trouser", or an index), only images of that class (exact on a
        class-conditional version)."""
        return self._send(Call("POST", "/generate", _images(), json=_fields(
            model=model, version=version, seed=seed, count=count, latent=latent,
            latents=None if latents is None else np.asarray(latents, dtype=np.float64), class_=class_,
            truncation=truncation, nrow=nrow, padding=padding, scale=scale)))

    def sweep(self, model: str, *, dims: Sequence[int] | None = None, directions: Sequence[int] | None = None,
              classes: Sequence[str | int] | None = None, values: Sequence[float] | None = None,
              seed: int | None = None, count: int | None = None, latent: Vector | None = None,
              latents: Sequence[Vector] | np.ndarray | None = None, mode: str = "set", labels: bool = True,
              truncation: float | None = None, padding: int = 2, scale: int = 1,
              version: Version = "latest") -> ImageResult:
        """The study's sweep: each of `dims` (default the study's five) set to each of `values`, over the base
        latents (default 8 from seed 0); or along SeFa `directions` or towards `classes` instead of `dims`. On a
        class-conditional version, `classes` without `values` is the "style x class" grid: one row per class, the
        same styles in every row."""
        return self._send(Call("POST", "/sweep", _images(), json=_fields(
            model=model, version=version, dims=None if dims is None else list(dims),
            directions=None if directions is None else list(directions),
            classes=None if classes is None else list(classes), values=None if values is None else list(values),
            seed=seed, count=count, latent=latent,
            latents=None if latents is None else np.asarray(latents, dtype=np.float64), mode=mode, labels=labels,
            truncation=truncation, padding=padding, scale=scale)))

    def interpolate(self, model: str, start: LatentRef, end: LatentRef, *, steps: int = 8, method: str = "slerp",
                    format: str = "png", frame_ms: int = 100, nrow: int | None = None, padding: int = 2,
                    scale: int = 1, truncation: float | None = None, version: Version = "latest") -> ImageResult:
        """`steps` images from `start` to `end` (each a latent, a `(seed, index)` pair, or {"seed":, "index":}; on
        a class-conditional version also `(seed, index, class)`, to go from one class to another): a PNG grid, or
        with format "gif"/"webp" a looping animation (`images` are then its frames)."""
        return self._send(Call("POST", "/interpolate", _images(scale), json=_fields(
            model=model, version=version, start=_latent_ref(start), end=_latent_ref(end), steps=steps, method=method,
            format=format, frame_ms=frame_ms, nrow=nrow, padding=padding, scale=scale, truncation=truncation)))

    # -------------------------------------------------------------- what the models are
    def models(self) -> list[dict]:
        """Every model in the store: its versions, with their manifests (how each was trained and measured)."""
        return self._send(Call("GET", "/models", lambda r: r.json()["models"]))

    def model(self, name: str) -> dict:
        """One model: its versions and manifests, which one "latest" is, which are loaded."""
        return self._send(Call("GET", f"/models/{name}", _json))

    def history(self, model: str, *, every: int = 1, version: Version = "latest") -> History:
        """The version's training curves (every `every`-th step): both losses, D(x) and D(G(z)), and the sample
        quality measured while it trained."""
        def parse(r: httpx.Response) -> History:
            body = r.json()
            return History(body["model"], body["version"], body["iterations_per_epoch"],
                           {k: np.asarray(v) for k, v in body["steps"].items()}, body["quality"])
        return self._send(Call("GET", f"/models/{model}/history", parse, params={"every": every, "version": version}))

    def directions(self, model: str, *, k: int = 10, version: Version = "latest") -> Directions:
        """The `k` strongest directions of the generator's first layer (SeFa), for `sweep(directions=...)`."""
        def parse(r: httpx.Response) -> Directions:
            body = r.json()
            return Directions(body["model"], body["version"], body["layer"], np.asarray(body["eigenvalues"]),
                              np.asarray(body["directions"], dtype=np.float32))
        return self._send(Call("GET", f"/models/{model}/directions", parse, params={"k": k, "version": version}))

    def classes(self, model: str, *, version: Version = "latest") -> dict:
        """The classes the version's latent space holds: share, boundary accuracy and direction of each."""
        return self._send(Call("GET", f"/models/{model}/classes", _json, params={"version": version}))

    def class_latents(self, model: str, class_: str | int, *, seed: int = 0, count: int = 8,
                      truncation: float | None = None, version: Version = "latest") -> ClassLatents:
        """The latents `generate(model, class_=..., seed=..., count=...)` draws, in its grid's order."""
        def parse(r: httpx.Response) -> ClassLatents:
            body = r.json()
            return ClassLatents(body["model"], body["version"], body["class"], body["seed"],
                                np.asarray(body["latents"], dtype=np.float32), body["verified"])
        params = _fields(version=version, seed=seed, count=count, truncation=truncation)
        return self._send(Call("GET", f"/models/{model}/classes/{class_}/latents", parse, params=params))

    def latents(self, seed: int, index: int = 0, *, dim: int = 100, classes: int = 0) -> np.ndarray:
        """The latent image `index` of `generate(seed=seed)` was made from, (dim,) float32: edit it, send it back.
        `classes`: a class-conditional model's number of classes (its latents end in a one-hot)."""
        return self._send(Call("GET", "/latents", lambda r: np.asarray(r.json()["latent"], dtype=np.float32),
                               params={"seed": seed, "index": index, "dim": dim, "classes": classes}))

    # -------------------------------------------------------------- pictures in
    def score(self, model: str, pictures: Sequence[Picture], *, class_: str | int | None = None,
              version: Version = "latest") -> dict:
        """The discriminator's logit and probability (how real it finds it) for each picture: paths, bytes, PIL
        images or uint8 arrays. `class_`: a class-conditional version's class for all of them (else each one's as
        the version's classifier sees it)."""
        files = [("files", _upload(p, f"image-{i}")) for i, p in enumerate(pictures)]
        return self._send(Call("POST", "/score", _json, data=_form(model=model, version=version, class_=class_),
                               files=files))

    def project(self, model: str, picture: Picture, *, steps: int = 100, seed: int = 0,
                class_: str | int | None = None, version: Version = "latest") -> Projection:
        """The latent of a picture (a path, bytes, PIL image or uint8 array): the version's encoder's guess, then
        `steps` steps of optimisation. `generate(model, latent=result.latent)` draws it back. On a
        class-conditional version z is searched with the class held: `class_`, else the picture's own."""
        def parse(r: httpx.Response) -> Projection:
            body = r.json()
            return Projection(body["model"], body["version"], np.asarray(body["latent"], dtype=np.float32),
                              body["start"], body["steps"], body["seconds"], body["losses"], body.get("class"))
        return self._send(Call("POST", "/project", parse, files=[("file", _upload(picture, "picture"))],
                               data=_form(model=model, version=version, steps=steps, seed=seed, class_=class_)))

    def project_image(self, model: str, picture: Picture, *, steps: int = 100, seed: int = 0, scale: int = 1,
                      class_: str | int | None = None, version: Version = "latest") -> ImageResult:
        """As `project`, but the answer is the picture (as fed to the model) beside its reconstruction."""
        return self._send(Call("POST", "/project", _images(), files=[("file", _upload(picture, "picture"))],
                               data=_form(model=model, version=version, steps=steps, seed=seed, class_=class_,
                                          format="png", scale=scale)))

    # -------------------------------------------------------------- the service
    def download(self, model: str, version: int, form: str = "onnx", network: str = "generator") -> bytes:
        """One network of a version in one form, as the store holds it: `form` onnx (`<network>.onnx`), export (a
        torch.export program, `.pt2`) or torchscript (`.pt`); `network` generator, discriminator or encoder. The
        bytes are what the version's manifest hashes (`model(name)` lists them)."""
        if form not in FORM_SUFFIXES:
            raise ValueError(f"form must be one of {', '.join(FORM_SUFFIXES)}, not {form!r}")
        file = network + FORM_SUFFIXES[form]
        return self._send(Call("GET", f"/models/{model}/versions/{version}/files/{file}", lambda r: r.content))

    def health(self) -> dict:
        """GET /readyz: whether the service can serve, and what it has loaded (raises 503 while it cannot)."""
        return self._send(Call("GET", "/readyz", _json))


class _Base(Routes):
    def __init__(self, url: str | None, api_key: str | None, timeout: float, retry: RetryPolicy | None):
        self.url = (url or os.environ.get("LATENTLAB_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("LATENTLAB_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = httpx.Timeout(timeout, connect=min(10.0, timeout))
        self.retry = retry or RetryPolicy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @staticmethod
    def _settle(call: Call, attempts: Attempts, response: httpx.Response | None,
                failure: httpx.TransportError | None) -> tuple[bool, Any]:
        """One try's outcome: (True, result), or (False, seconds to wait before the next); raises the typed
        error when it is final."""
        if failure is not None:
            error = (APITimeoutError if isinstance(failure, httpx.TimeoutException) else APIConnectionError)(
                f"{failure.__class__.__name__} talking to {failure.request.url}: {failure}")
            # a read timeout may mean the work is under way: do not pile another request on top of it
            wait = None if isinstance(failure, httpx.ReadTimeout) else attempts.next_wait(None)
        elif response.is_success:
            return True, call.parse(response)
        else:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            error = status_error(response.status_code, body, dict(response.headers))
            wait = (attempts.next_wait(parse_retry_after(response.headers.get("retry-after")))
                    if response.status_code in RETRY_STATUSES else None)
        if wait is None:
            raise error from failure
        return False, wait


class Client(_Base):
    """The service's API from Python.

        from latentlab import Client
        client = Client()                               # LATENTLAB_URL, LATENTLAB_API_KEY, or localhost:8000
        result = client.generate("dcgan", seed=0, count=8, scale=4)
        result.image.save("samples.png"); result.images.shape   # (8, 28, 28) uint8

    `timeout`: seconds for each try; `retry`: how 503s and connection errors are retried (`RetryPolicy`).
    Use it as a context manager, or call `close()`, to release its connections."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None):
        super().__init__(url, api_key, timeout, retry)
        self._http = httpx.Client(base_url=self.url, headers=self._headers, timeout=self._timeout, transport=transport)

    def _send(self, call: Call):
        attempts = self.retry.start()
        while True:
            response, failure = None, None
            try:
                response = self._http.request(call.method, call.path, **call.request())
            except httpx.TransportError as e:
                failure = e
            done, value = self._settle(call, attempts, response, failure)
            if done:
                return value
            time.sleep(value)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_Base):
    """`Client`'s twin for asyncio: the same methods, awaited (`await client.generate("dcgan", seed=0)`)."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: RetryPolicy | None = None, transport: httpx.AsyncBaseTransport | None = None):
        super().__init__(url, api_key, timeout, retry)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=self._timeout,
                                       transport=transport)

    async def _send(self, call: Call):
        attempts = self.retry.start()
        while True:
            response, failure = None, None
            try:
                response = await self._http.request(call.method, call.path, **call.request())
            except httpx.TransportError as e:
                failure = e
            done, value = self._settle(call, attempts, response, failure)
            if done:
                return value
            await asyncio.sleep(value)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
