"""The serving engine: which model versions are in memory, and how requests' latents become images.

`registry` loads versions from the store, warms them up, hot-swaps new ones and keeps an LRU of pinned
older ones; `engine` prepares a loaded generator (warm-up, semantic directions, runner, batcher) and
runs discriminators; `batcher` queues every loaded version's requests for the one inference thread per
device, which runs them in shared forwards; `runner` is that forward (CUDA graphs on CUDA);
`directions` finds a generator's semantic directions. The HTTP side (routes, schemas, auth) depends on
this package, never the other way round (an import-linter contract in pyproject.toml).
"""
