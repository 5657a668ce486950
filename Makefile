# Two commands do everything on a fresh machine:
#   make reproduce   regenerate every paper result at the CPU preset on embedded datasets (results/cpu/)
#   make test        the test suite (what CI runs)
#   make lab         JupyterLab on notebooks/
# Both create .venv when missing, install the pinned Python dependencies (requirements.lock) and, when run as
# root with apt, the Debian packages the kit needs.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := espeak-ng fluidsynth fluid-soundfont-gm libsndfile1 sox
PRESET ?= cpu
# 8 virtual CPU devices: the sharding / context-parallel tests need them; harmless elsewhere.
TEST_ENV := XLA_FLAGS=--xla_force_host_platform_device_count=8
PYTEST_ARGS ?=

.PHONY: setup system-packages reproduce test test-slow lab clean

setup: $(STAMP)

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "warning: missing system packages ($$missing); install them to build the embedded datasets" >&2; \
	fi

$(STAMP): requirements.lock pyproject.toml | system-packages
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

reproduce: $(STAMP) system-packages
	$(VENV)/bin/hrnn reproduce --preset $(PRESET) --out results/$(PRESET)

test: $(STAMP) system-packages
	$(TEST_ENV) $(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-slow: $(STAMP) system-packages
	$(TEST_ENV) $(PY) -m pytest -n 2 -m slow $(PYTEST_ARGS)

# JupyterLab on the notebooks (installed by setup, pinned in requirements.lock).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .pytest_cache
