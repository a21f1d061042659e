# The two commands the README opens with: `make run` (main job) and `make test`.
# Each creates .venv on first use and installs the pinned versions into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench venv clean

venv: $(STAMP)

# The postgres (psycopg) and dask extras too: the PostgreSQL and Dask tests start a throwaway server or cluster
# and must run, not skip.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,postgres,dask]'
	touch $(STAMP)

# Main job: a real search of the default space under a latency budget, writing runs/sandglass-25ms/.
# Running it again resumes the study with more trials.
# On a slower device: make run TARGET=40ms (the run folder is then runs/sandglass-40ms/).
TARGET ?= 25ms
run: $(STAMP)
	$(VENV)/bin/nas search --space search_spaces/sandglass.yaml --target-latency $(TARGET) --n-trials 200

# Two test processes (pytest-xdist): most tests wait on subprocesses, servers and sleeps, so on the
# 2-core CI box the suite takes about 11 min instead of 15. Each process has its own PostgreSQL server.
test: $(STAMP)
	$(PY) -m pytest -q -n 2

# Every benchmark's quick mode, one after another (a few minutes): checks each path runs end to end.
# Its figures are not for quoting; run `$(PY) -m benchmarks.<name> --help` for the real runs.
BENCHMARKS := $(sort $(basename $(notdir $(wildcard benchmarks/[a-z]*.py))))  # every benchmark module (not _common, _latency, ...)
bench: $(STAMP)
	@set -e; for name in $(BENCHMARKS); do echo "== benchmarks.$$name --quick"; $(PY) -m benchmarks.$$name --quick; done

clean:
	rm -rf $(VENV) *.egg-info
