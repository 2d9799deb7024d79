# latentlab: `make demo` trains a small model if the store is empty and serves it; `make check` runs the fast tier
# (lint, import rules, the fast tests) before a commit; `make test` runs the whole test suite. Each creates and fills
# the virtualenv itself.

PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
MODEL_DIR ?= ./models
HOST      ?= 127.0.0.1
PORT      ?= 8000
# what `make demo` trains: the best pictures 90 s of training buy on a 2-core CPU (docs/getting-started.md); on one
# thread, which trains the plain GAN's small layers faster than two
DEMO_ARCH ?= gan
DEMO_RECIPE ?= gan-fashion-mnist
DEMO_MINUTES ?= 1.5
DEMO_THREADS ?= 1
DEMO_ENCODER_STEPS ?= 300
PYTEST_ARGS ?= --durations=30
# pytest-xdist workers for the parallel part of the suite (auto: one per CPU; tests/conftest.py gives each one thread)
PYTEST_WORKERS ?= auto
DOCS_PORT ?= 8001
# the docs site, strictly: a broken link, a missing picture or a heading anchor that does not exist is an error
SPHINX = $(BIN)/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html

export MODEL_DIR HOST PORT

.PHONY: help install demo serve docs check test bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# one stamp per set of extras: pyproject.toml changing reinstalls
# the run extras: training, serving, and the client that the `latentlab` command (and `make demo`'s examples) use
$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,serve,client]'
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,serve,dev]'
	@touch $@ $(VENV)/.stamp-run $(VENV)/.stamp-docs

$(VENV)/.stamp-docs: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[docs]'
	@touch $@

# what the tests generate TypeScript clients with (tests/test_generated_clients.py), pinned by its lock file
tests/clients/node_modules/.stamp: tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund --silent
	@touch $@

# ONNX Runtime Web, which the explorer draws with in the page, pinned by its lock file; without npm the
# explorer draws on the server
RUNTIME_DIR := service/api/static/runtime
$(RUNTIME_DIR)/node_modules/.stamp: $(RUNTIME_DIR)/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix $(RUNTIME_DIR) --ignore-scripts --no-audit --no-fund --silent && touch $@; \
	else echo "  npm not found: the explorer will draw on the server (install npm, then make install, to draw in the page)"; fi

install: $(VENV)/.stamp-run $(RUNTIME_DIR)/node_modules/.stamp  ## create .venv and install latentlab with the train, serve and client extras

demo: $(VENV)/.stamp-run $(RUNTIME_DIR)/node_modules/.stamp  ## train the best model 90 s of training buy into ./models if it is empty, then serve it on :8000
	@$(BIN)/python -m shared "$(MODEL_DIR)" >/dev/null 2>&1; listed=$$?; \
	if [ $$listed -eq 3 ]; then $(BIN)/python -m shared "$(MODEL_DIR)" >&2; fi; \
	if [ $$listed -eq 1 ]; then \
		echo "store $(MODEL_DIR) is empty: training $(DEMO_ARCH) with --recipe $(DEMO_RECIPE) for $(DEMO_MINUTES) minutes, then its encoder (under three minutes in all)"; \
		OMP_NUM_THREADS=$(DEMO_THREADS) $(BIN)/latentlab-train --arch $(DEMO_ARCH) --recipe $(DEMO_RECIPE) --minutes $(DEMO_MINUTES) --encoder-steps $(DEMO_ENCODER_STEPS) \
			--out "$(MODEL_DIR)" >/dev/null || exit $$?; \
	fi
	@echo ""
	@echo "  latentlab is starting on http://$(HOST):$(PORT)"
	@echo "  explorer:   http://$(HOST):$(PORT)/"
	@echo "  API docs:   http://$(HOST):$(PORT)/docs"
	@echo ""
	@echo "  from another shell, in this folder:"
	@echo "    . $(BIN)/activate && export LATENTLAB_URL=http://$(HOST):$(PORT)"
	@echo "    latentlab generate --model $(DEMO_ARCH) --seed 0 --scale 4 -o samples.png        # the seed's 8 images"
	@echo "    latentlab sweep --model $(DEMO_ARCH) --scale 3 -o sweep.png                       # the seed's 5-coordinate sweep"
	@echo "    latentlab generate --model $(DEMO_ARCH) --class Sneaker --scale 4 -o sneakers.png  # 8 of one class"
	@echo "  or from Python:"
	@echo "    from latentlab import Client"
	@echo "    result = Client('http://$(HOST):$(PORT)').generate('$(DEMO_ARCH)', seed=0, scale=4)"
	@echo "    result.image.save('samples.png'); result.images.shape    # the grid, and every image as NumPy"
	@echo "  Ctrl-C stops it."
	@echo ""
	@$(BIN)/latentlab-serve

serve: $(VENV)/.stamp-run $(RUNTIME_DIR)/node_modules/.stamp  ## serve the store in MODEL_DIR without training
	$(BIN)/python -m service

docs: $(VENV)/.stamp-docs  ## build the docs site from docs/ and serve it on :8001
	$(SPHINX)
	@echo "  the docs: http://$(HOST):$(DOCS_PORT)/  (Ctrl-C stops it)"
	@$(BIN)/python -m http.server $(DOCS_PORT) --bind $(HOST) --directory docs/_build/html >/dev/null

check: $(VENV)/.stamp-dev  ## the fast tier, for every commit: lint, import rules and the tests marked fast (a few minutes)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "fast and not slow" -q

test: $(VENV)/.stamp-dev tests/clients/node_modules/.stamp $(RUNTIME_DIR)/node_modules/.stamp  ## install the test dependencies, lint, check the import rules, build the docs strictly, run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(SPHINX)
	@# the stores the tests train are built once and shared by both parts (tests/conftest.py: built_once)
	built=$$(mktemp -d); trap 'rm -rf "$$built"' EXIT; export LATENTLAB_BUILT_ONCE=$$built; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope -m "not serial" $(PYTEST_ARGS) && \
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS)

bench: $(VENV)/.stamp-dev  ## serving benchmark on MODEL_DIR's dcgan: the forward limit, latentlab vs a naive FastAPI app under wrk
	@command -v wrk >/dev/null || { echo "the benchmark needs wrk: apt-get install wrk"; exit 2; }
	$(BIN)/python benchmarks/serve_compare.py --store "$(MODEL_DIR)" --model dcgan

clean:  ## remove the virtualenv and caches (keeps ./models)
	rm -rf $(VENV) .pytest_cache docs/_build docs/_generated
