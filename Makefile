# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# GPU users: `make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`
# or any pip spec for a torch build that fits their machine.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: install install-bench demo test lint bench deepspeed clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hadpo demo --config configs/demo.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks

# Tests in TEST_WORKERS processes (pytest-xdist), one torch thread each: two processes with a thread per core
# would spin-wait on each other's cores.
TEST_WORKERS ?= 2
test: $(STAMP) lint
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -n $(TEST_WORKERS)

# The slow end-to-end runs `make test` leaves out (pretraining world base models, the demo's ablations, DDP with
# precomputed references); worlds and base models are cached under runs/ and reused by later runs.
.PHONY: test-slow
test-slow: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -n $(TEST_WORKERS) -m slow

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $(BENCH_STAMP)

# TRL (plain `trl`), the benchmarks' baseline, without running them (e.g. before benchmarks/speed/gpu_check.sh).
install-bench: $(BENCH_STAMP)

# The speed benchmarks (docs/benchmarks.md) on the CPU, one torch thread per process, ~15 min on a busy 2-core
# machine. They print figures; nothing here passes or fails on a number.
bench: $(BENCH_STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.speed.train_speed
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.speed.train_epochs
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.speed.eval_speed

# DeepSpeed built against the venv's torch (never an isolated build, which would fetch a CUDA torch).
deepspeed: $(STAMP)
	$(PY) -m pip install --quiet --no-build-isolation -e ".[dev,deepspeed]"

clean:
	rm -rf $(VENV) runs .pytest_cache
