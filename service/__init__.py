"""The inference service: loads published TorchScript generators and serves PNG grids over HTTP."""

from importlib.util import find_spec as _find_spec

_missing = [name for name in ("torch", "fastapi", "uvicorn", "pydantic_settings") if _find_spec(name) is None]
if _missing:  # `pip install 'latentlab[client]'` has the command but not what it runs on
    raise ModuleNotFoundError(f"the service needs {', '.join(_missing)}: pip install 'latentlab[serve]'")
