# Two entry points (see README): `make demo` and `make test`. Both set everything up first, one line per step
# (installers' own output goes to build/setup.log, shown only when a step fails), and are
# idempotent: the environment is rebuilt only when requirements.lock or pyproject.toml change, and the data
# is copied once.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SHARED_DATA ?= ../shared/data
DATA := $(CURDIR)/data
export DP_COURSE_DATA ?= $(DATA)
export MPLBACKEND ?= Agg

.PHONY: demo test test-fast lint screenshots setup install data browser postgres sandbox
# Two workers: the sample class grades in about half the time on a laptop's cores.
demo: setup sandbox
	$(PY) -m autograder demo --workers 2

# The whole suite, as CI runs it: every test's time in build/junit.xml, the slowest 30 on the terminal.
test: setup sandbox browser postgres
	$(PY) -m pytest --junitxml=build/junit.xml

# Every test that starts no kernel and trains no model (the `slow` marker marks the rest): under 5 minutes.
test-fast: setup sandbox
	$(PY) -m pytest -m "not slow"

# The report and a feedback page in Chromium at a laptop's widths and a phone's, copied into docs/screenshots.
screenshots: setup browser
	$(PY) -m pytest tests/autograder/commands/test_report.py::test_report_reads_at_any_width tests/autograder/pipeline/test_feedback_browser.py
	cp build/screenshots/report-*.png build/screenshots/feedback-*.png docs/screenshots/

# ruff (lint and format) on everything, mypy on autograder/ (pyproject.toml configures both).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Debian's bubblewrap, the grading sandbox (installed only when missing; needs root). Without it `grade` stops
# with a message unless --no-sandbox is given.
sandbox:
	-@sh scripts/install_bubblewrap.sh

# Debian's chromium for the JupyterLab browser test (installed only when missing; needs root). Without it
# that test is skipped with a message, and everything else still runs.
browser:
	-@sh scripts/install_browser.sh

# Debian's PostgreSQL server for tests/autograder/commands/test_postgres.py (installed only when missing; needs root). Without it
# that test is skipped with a message.
postgres:
	-@sh scripts/install_postgres.sh

setup: install data

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@sh scripts/step.sh "creating $(VENV) with $(PYTHON)" $(PYTHON) -m venv $(VENV)
	@sh scripts/step.sh "installing requirements.lock into $(VENV)" $(PY) -m pip install -r requirements.lock
	@sh scripts/step.sh "installing this project into $(VENV) (editable)" $(PY) -m pip install --no-deps -e .
	@touch $@

# The notebooks read datasets from DP_COURSE_DATA through the real loaders; a local copy of ../shared/data
# lets them run offline (torchvision unpacks MNIST next to the archives, so the copy must be writable).
data: $(DATA)/.copied

$(DATA)/.copied: | install
	@mkdir -p $(DATA)
	@if [ -d "$(SHARED_DATA)" ]; then \
		cp -r "$(SHARED_DATA)/MNIST" "$(SHARED_DATA)/medmnist" $(DATA)/ && chmod -R u+w $(DATA) && \
		echo "copied $(SHARED_DATA) into $(DATA)"; \
	else \
		echo "no $(SHARED_DATA): notebooks will download their datasets into $(DATA)"; \
	fi
	@# Unpack MNIST once, through torchvision's own loader, so that sandboxed grading kernels (which may
	@# only read the data folder) find it ready.
	@sh scripts/step.sh "unpacking MNIST in $(DATA)" \
		$(PY) -c "import torchvision; [torchvision.datasets.MNIST('$(DATA)', train=t, download=True) for t in (True, False)]"
	@touch $@
