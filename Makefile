# The two commands the README opens with: `make run` (main job) and `make test`.
# Each creates .venv on first use and installs the pinned versions into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Main job: a real search of the default space under a latency budget, writing runs/sandglass-25ms/.
# Running it again resumes the study with more trials.
run: $(STAMP)
	$(VENV)/bin/nas search --space search_spaces/sandglass.yaml --target-latency 25ms --n-trials 200

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/cost_scoring.py

clean:
	rm -rf $(VENV) *.egg-info
