# comfywatchman: `make cycle` runs one readiness cycle, `make test` runs the tests. Both create .venv first.
#   make cycle COMFYUI_ROOT=~/ComfyUI      your install (without it: the demo install in examples/)
#   make scan ARGS="--offline"            any stage alone: gate cache intake scan search verify report

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
STAGES := gate cache intake scan search verify report
# The checkout's targets keep state/, output/ and log/ in the checkout (an installed tool uses the user's data
# folder); a COMFYWATCHMAN_HOME of your own, or --home in ARGS, still wins.
HOME_ENV := COMFYWATCHMAN_HOME="$${COMFYWATCHMAN_HOME:-$(CURDIR)}"

.PHONY: install cycle $(STAGES) test test-reliability lint format bench clean clean-data install-cron uninstall-cron

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
	$(HOME_ENV) $(PY) -m comfywatchman --run-cycle $(ROOT_FLAG) $(ARGS)

$(STAGES): $(RUNTIME_STAMP)
	$(HOME_ENV) $(PY) jobs/$@.py $(ROOT_FLAG) $(ARGS)

test: $(TEST_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The long proving suites (tests marked `reliability`: hundreds of kills, overlapping runs, >= 10,000 fuzzed
# workflow files, network faults), with their figures printed at the end (tests/helpers/figures.py). Takes minutes.
test-reliability: $(TEST_STAMP)
	$(PY) -m pytest -p tests.helpers.figures -m reliability -s -p no:cacheprovider $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(TEST_STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(TEST_STAMP)
	$(PY) -m bench.run $(ARGS)

# clean removes what the build made; never state/, output/ or log/ (your history, reports and logs).
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build lib/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# clean-data deletes this folder's comfywatchman data, on purpose only: acknowledged workflows, readiness
# history, caches, reports and logs. The next cycle starts as if it were the first.
clean-data:
	@echo 'deleting $(CURDIR)/state (workflow acknowledgments, readiness history, caches), $(CURDIR)/output (reports) and $(CURDIR)/log (logs)'
	rm -rf state output log

# cron: one guarded cycle every 2 hours (see crontab.example and docs/technical/scheduling.md). The line is
# tagged, so installing twice leaves one line and uninstall-cron removes exactly it. CRON_HOME is where
# state/, output/ and log/ live (default: this folder); COMFYUI_ROOT (absolute) and ARGS (e.g.
# ARGS="--config /home/me/cw.toml") are written into the line when given.
CRON_HOME ?= $(CURDIR)
CRONTAB ?= crontab
CRON_TAG := \# comfywatchman (make install-cron)
CRON_LINE = 0 */2 * * * cd "$(CRON_HOME)" && COMFYWATCHMAN_TRIGGER=cron "$(abspath $(VENV))/bin/comfywatchman" --run-cycle --home "$(CRON_HOME)" $(ROOT_FLAG) $(ARGS) --quiet >> "$(CRON_HOME)/log/cron.log" 2>&1 $(CRON_TAG)

# The current crontab without our line; "no crontab for USER" is an empty one, any other failure stops here
# (so a crontab that could not be read is never overwritten).
CRON_OTHERS = current=$$($(CRONTAB) -l 2>&1) || case "$$current" in *"no crontab"*) current= ;; \
	*) echo "$(CRONTAB) -l failed: $$current" >&2; exit 1 ;; esac; \
	others=$$(printf '%s\n' "$$current" | grep -v -F '$(CRON_TAG)' || true)

install-cron: $(RUNTIME_STAMP)
	mkdir -p "$(CRON_HOME)/log"
	@$(CRON_OTHERS); \
	{ if [ -n "$$others" ]; then printf '%s\n' "$$others"; fi; echo '$(CRON_LINE)'; } | $(CRONTAB) -
	@echo 'installed in your crontab: $(CRON_LINE)'

uninstall-cron:
	@$(CRON_OTHERS); \
	if [ -n "$$others" ]; then printf '%s\n' "$$others" | $(CRONTAB) -; else $(CRONTAB) -r 2>/dev/null || true; fi
	@echo 'removed the comfywatchman line from your crontab (if it was there)'
