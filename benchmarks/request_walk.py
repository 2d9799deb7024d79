"""Walk one request through the service's code, as a reader following it would: every call into a function of the
project's own packages (`service/`, `shared/`) in order, collapsed into stops (a stop is a run of calls in one file),
with the files visited and how often each is entered, each thread's walk apart (the request's, on the event loop, and
the inference thread's turn at its forward), so that their interleaving does not change the count. What
`docs/architecture.md` means by a request's path.

    python benchmarks/request_walk.py --store ./models --model dcgan            # POST /generate {"seed": 0}
    python benchmarks/request_walk.py --store ./models --model dcgan --body '{"seed": 0, "count": 4, "class": 1}'

The request is sent twice through an in-process app (FastAPI's TestClient, the lean path included) and the
second one is walked: the first loads what a cold request would.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WATCHED = (str(ROOT / "service"), str(ROOT / "shared"))

from starlette.responses import Response  # noqa: E402


class Walk:
    """The project files a request's calls enter, one entry per call, in order (every thread: the inference thread's
    forward too); with `endpoint` (a function's name in service/api/routes/), only while it runs: the walk from the
    route to the answer, the middleware left out. A coroutine that goes on after an await is not entered again: a
    reader following the request is still in it.

    Installed before the app starts, since a trace function reaches only the threads started after it (the test
    client's event loop and the engine's inference thread among them); it records only while `on`."""

    def __init__(self, endpoint: str | None) -> None:
        self.endpoint, self.on, self.entered, self.frames = endpoint, False, [], {}
        self.recording = endpoint is None

    def tracer(self, frame, event, arg):
        code = frame.f_code
        if not self.on or not code.co_filename.startswith(WATCHED):
            return None
        here = self.endpoint is not None and code.co_name == self.endpoint and "/routes/" in code.co_filename
        if event == "call":
            self.recording = self.recording or here
            resumed = id(frame) in self.frames  # a coroutine going on after an await: no new step for the reader
            self.frames[id(frame)] = frame  # kept, so that no later frame can take its id
            if self.recording and not resumed:
                self.entered.append((threading.get_ident(), str(Path(code.co_filename).relative_to(ROOT))))
        if here:  # a coroutine "returns" at every await: the walk ends with the one that returns the answer
            return self.route_tracer
        return None

    def route_tracer(self, frame, event, arg):
        if event == "return" and isinstance(arg, Response):
            self.recording = False

    def install(self) -> None:
        threading.settrace(self.tracer)
        sys.settrace(self.tracer)

    def remove(self) -> None:
        sys.settrace(None)
        threading.settrace(None)


def main() -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.api.settings import Settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--model", default="dcgan")
    p.add_argument("--path", default="/generate")
    p.add_argument("--body", default='{"seed": 0}', help="the request body, less the model (JSON)")
    p.add_argument("--endpoint", default="generate",
                   help="walk only while this route function runs (default: generate); '' for the whole request")
    args = p.parse_args()
    body = {"model": args.model, **json.loads(args.body)}
    settings = Settings(model_dir=args.store, device="cpu", runtime="torchscript", precision="fp32")
    walk = Walk(args.endpoint or None)
    walk.install()
    try:
        with TestClient(create_app(settings)) as client:
            while client.get("/readyz").status_code != 200:
                pass
            client.post(args.path, json=body)  # warm: the cold path's loads are not the request's
            walk.on = True
            response = client.post(args.path, json=body)
            walk.on = False
    finally:
        walk.remove()
    assert response.status_code == 200, response.text
    by_thread: dict[int, list[str]] = {}  # in the order each thread first enters: the request's, then the forward's
    for thread, file in walk.entered:
        by_thread.setdefault(thread, []).append(file)
    walks = [[f for i, f in enumerate(files) if i == 0 or files[i - 1] != f] for files in by_thread.values()]
    stops = [stop for walk_ in walks for stop in walk_]
    entries = Counter(stops)
    print(f"{args.path} {json.dumps(body)}: {len(stops)} stops in {len(entries)} files, "
          f"{len(stops) - len(entries)} returns to a file already left")
    for file, times in sorted(entries.items(), key=lambda item: -item[1]):
        print(f"  {times:3d}x {file}")
    for name, walk_ in zip(("the request's thread", "the inference thread"), walks):
        print(f"{name}: " + " > ".join(Path(f).stem for f in walk_))


if __name__ == "__main__":
    main()
