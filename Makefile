# comfywatchman: `make cycle` runs one readiness cycle, `make test` runs the tests. Both create .venv first.
#   make cycle COMFYUI_ROOT=~/ComfyUI      your install (without it: the demo install in examples/)
#   make scan ARGS="--offline"            any stage alone: gate cache intake scan search report

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
# ComfyUI-Manager's node and model maps; its own requirements are heavy and unused here, hence --no-deps.
MANAGER_PIN := comfyui-manager==4.3
COMFYUI_ROOT ?=
ARGS ?=
PYTEST_ARGS ?=
ROOT_FLAG := $(if $(COMFYUI_ROOT),--comfyui-root "$(COMFYUI_ROOT)",)
STAGES := gate cache intake scan search report

.PHONY: install cycle $(STAGES) test lint format bench clean

$(RUNTIME_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(MANAGER_PIN)
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP) pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(RUNTIME_STAMP)

cycle: $(RUNTIME_STAMP)
	$(PY) -m comfywatchman --run-cycle $(ROOT_FLAG) $(ARGS)

$(STAGES): $(RUNTIME_STAMP)
	$(PY) jobs/$@.py $(ROOT_FLAG) $(ARGS)

test: $(TEST_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .

format: $(TEST_STAMP)
	$(VENV)/bin/ruff check --fix .

bench: $(TEST_STAMP)
	$(PY) bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) state output log .pytest_cache .ruff_cache build lib/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
