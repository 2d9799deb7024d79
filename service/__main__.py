"""`python -m service`: serve MODEL_DIR on HOST:PORT (settings from the environment, see service/api/settings.py)."""
from __future__ import annotations

import os

# After each parallel region OpenMP's threads spin, waiting for the next: on a small CPU that spinning takes the
# core the event loop needs to parse, encode and write responses. Passive threads sleep at once (measured in
# docs/results/serving.md, "Where a request's CPU goes, beside Triton").
# Set before torch loads OpenMP; an operator's own OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
import sys  # noqa: E402

import uvicorn  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from service.api.app import create_app  # noqa: E402
from service.api.drain import DrainingServer  # noqa: E402
from service.api.gathered_writes import GatheringHttpToolsProtocol  # noqa: E402
from service.api.settings import Settings  # noqa: E402
from shared.errors import UserError, command  # noqa: E402

PROG = "service"
STARTUP_FAILURE = 3  # uvicorn's exit status when the server never started (the port taken, say)


def usage() -> str:
    lines = ["usage: [VARIABLE=value ...] latentlab-serve   (or: python -m service)",
             "", "Serve the model store's generators over HTTP (docs at /docs). Settings, from the environment:", ""]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default is not None else ""
        lines.append(f"  {name.upper():<18} {field.description or '':<62} (default: {default})")
    return "\n".join(lines)


def read_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:  # one line for all of them, each named by its variable
        raise UserError("; ".join(f"{'.'.join(map(str, err['loc'])).upper() or 'settings'}: {err['msg']}"
                                  for err in e.errors())) from None


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        print(usage())
        return 0 if argv[0] in ("-h", "--help") else 2
    settings = read_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)  # DeviceError, KeysFileError: one line, exit 2
    server = {"host": settings.host, "port": settings.port, "log_level": settings.log_level.lower(),
              "http": GatheringHttpToolsProtocol or "auto"}
    if settings.workers > 1:  # each worker process builds its own app from the same environment
        uvicorn.run("service.api.app:create_app", factory=True, workers=settings.workers, **server)
        return 0
    # one process: SIGTERM drains (service/api/drain.py), then the process exits 0
    runner = DrainingServer(uvicorn.Config(app, **server), app.state.services.drain, settings.drain_timeout_s)
    runner.run()
    return 0 if runner.started else STARTUP_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
