"""`python -m service`: serve MODEL_DIR on HOST:PORT (settings from the environment, see service/settings.py)."""
from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from service.app import create_app
from service.settings import Settings


def main() -> int:
    try:
        settings = Settings()
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        app = create_app(settings)
    except ValidationError as e:
        for err in e.errors():
            print(f"service: error: {'.'.join(map(str, err['loc'])).upper()}: {err['msg']}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"service: error: {e}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
