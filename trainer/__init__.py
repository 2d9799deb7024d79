"""The training job: data, the training loop, TorchScript export, the seed's figures, publishing."""

from importlib.util import find_spec as _find_spec

_missing = [name for name in ("torch", "torchvision", "matplotlib", "tqdm") if _find_spec(name) is None]
if _missing:  # `pip install 'latentlab[client]'` has the command but not what it runs on
    raise ModuleNotFoundError(f"the trainer needs {', '.join(_missing)}: pip install 'latentlab[train]'")
