# latentlab: `make demo` trains a small model if the store is empty and serves it;
# `make test` runs the whole test suite. Both create and fill the virtualenv themselves.

PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
MODEL_DIR ?= ./models
HOST      ?= 127.0.0.1
PORT      ?= 8000
DEMO_ARCH ?= gan
DEMO_EPOCHS ?= 5
PYTEST_ARGS ?=

export MODEL_DIR HOST PORT

.PHONY: help install demo serve test bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# one stamp per set of extras: pyproject.toml changing reinstalls
$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,serve]'
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,serve,dev]'
	@touch $@ $(VENV)/.stamp-run

install: $(VENV)/.stamp-run  ## create .venv and install latentlab with the train and serve extras

demo: $(VENV)/.stamp-run  ## train the seed's plain GAN into ./models if it is empty, then serve it on :8000
	@if ! $(BIN)/python -m shared "$(MODEL_DIR)" >/dev/null 2>&1; then \
		echo "store $(MODEL_DIR) is empty: training the seed's $(DEMO_ARCH) for $(DEMO_EPOCHS) epochs (about a minute on a laptop CPU)"; \
		$(BIN)/python -m trainer --arch $(DEMO_ARCH) --epochs $(DEMO_EPOCHS) --out "$(MODEL_DIR)" >/dev/null || exit $$?; \
	fi
	@echo ""
	@echo "  latentlab is starting on http://$(HOST):$(PORT)"
	@echo "  explorer:   http://$(HOST):$(PORT)/"
	@echo "  API docs:   http://$(HOST):$(PORT)/docs"
	@echo "  8 samples:  curl -s -X POST http://$(HOST):$(PORT)/generate -H 'Content-Type: application/json' -d '{\"model\": \"$(DEMO_ARCH)\", \"seed\": 0, \"count\": 8, \"scale\": 4}' -o samples.png"
	@echo "  the sweep:  curl -s -X POST http://$(HOST):$(PORT)/sweep -H 'Content-Type: application/json' -d '{\"model\": \"$(DEMO_ARCH)\", \"scale\": 3}' -o sweep.png"
	@echo "  Ctrl-C stops it."
	@echo ""
	@$(BIN)/python -m service

serve: $(VENV)/.stamp-run  ## serve the store in MODEL_DIR without training
	$(BIN)/python -m service

test: $(VENV)/.stamp-dev  ## install the test dependencies, lint, check the import rules, run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.stamp-dev  ## serving benchmark on MODEL_DIR's dcgan: the forward limit, latentlab vs a naive FastAPI app under wrk
	@command -v wrk >/dev/null || { echo "the benchmark needs wrk: apt-get install wrk"; exit 2; }
	$(BIN)/python benchmarks/serve_compare.py --store "$(MODEL_DIR)" --model dcgan

clean:  ## remove the virtualenv and caches (keeps ./models)
	rm -rf $(VENV) .pytest_cache
