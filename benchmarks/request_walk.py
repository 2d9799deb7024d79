"""Walk one request through the service's code, as a reader following it would: every call into a function of the
project's own packages (`service/`, `shared/`) in order, collapsed into stops (a stop is a run of calls in one file),
with the files visited and how often each is entered. What `docs/architecture.md` means by a request's path.

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


def walk(client, path: str, body: dict, endpoint: str | None) -> list[str]:
    """The project files the request's calls enter, one entry per call, in order (every thread: the inference
    thread's forward too); with `endpoint` (a function's name in service/api/routes/), only while it runs: the
    walk from the route to the answer, the middleware left out."""
    entered: list[str] = []
    recording = [endpoint is None]

    def tracer(frame, event, arg):
        code = frame.f_code
        if not code.co_filename.startswith(WATCHED):
            return None
        here = endpoint is not None and code.co_name == endpoint and "/routes/" in code.co_filename
        if event == "call":
            recording[0] = recording[0] or here
            if recording[0]:
                entered.append(str(Path(code.co_filename).relative_to(ROOT)))
        if here:  # a coroutine "returns" at every await: the walk ends with the one that returns the answer
            return lambda f, e, a: recording.__setitem__(0, False) if e == "return" and isinstance(a, Response) \
                else None
        return None

    threading.settrace(tracer)
    sys.settrace(tracer)
    try:
        response = client.post(path, json=body)
    finally:
        sys.settrace(None)
        threading.settrace(None)
    assert response.status_code == 200, response.text
    return entered


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
    with TestClient(create_app(settings)) as client:
        while client.get("/readyz").status_code != 200:
            pass
        client.post(args.path, json=body)  # warm: the cold path's loads are not the request's
        entered = walk(client, args.path, body, args.endpoint or None)
    stops = [f for i, f in enumerate(entered) if i == 0 or entered[i - 1] != f]
    entries = Counter(stops)
    print(f"{args.path} {json.dumps(body)}: {len(stops)} stops in {len(entries)} files, "
          f"{len(stops) - len(entries)} returns to a file already left")
    for file, times in sorted(entries.items(), key=lambda item: -item[1]):
        print(f"  {times:3d}x {file}")
    print("stops: " + " > ".join(Path(f).stem for f in stops))


if __name__ == "__main__":
    main()
