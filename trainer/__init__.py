"""The training job. Its commands are the modules here (`python -m trainer`, whose flags are `trainer.cli`'s, and
`trainer.tune`, `.evaluate`, `.classifier`, `.project`, `.tinted`, `.upgrade`); what they run is in `training/`
(a run from settings to trained networks), `publishing/` (a trained run into the store) and `evaluation/` (the
metrics)."""

from importlib.util import find_spec as _find_spec

_missing = [name for name in ("torch", "torchvision", "matplotlib", "tqdm") if _find_spec(name) is None]
if _missing:  # `pip install 'latentlab[client]'` has the command but not what it runs on
    raise ModuleNotFoundError(f"the trainer needs {', '.join(_missing)}: pip install 'latentlab[train]'")
