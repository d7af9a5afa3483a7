# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# GPU users: `make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`
# or any pip spec for a torch build that fits their machine.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed

.PHONY: install demo test lint bench deepspeed clean

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

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"

# DeepSpeed built against the venv's torch (never an isolated build, which would fetch a CUDA torch).
deepspeed: $(STAMP)
	$(PY) -m pip install --quiet --no-build-isolation -e ".[dev,deepspeed]"

clean:
	rm -rf $(VENV) runs .pytest_cache
