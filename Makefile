# Two entry points (see README): `make demo` trains and shows a real VAE, `make test` runs the tests.
# Both build the virtual environment first: torch==2.13.0 (the CPU build) before the project, so an
# unpinned resolve never pulls a multi-GB CUDA build.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vaekit-installed

.PHONY: demo test data bench clean

$(STAMP): pyproject.toml scripts/setup-env.sh
	bash scripts/setup-env.sh $(VENV)
	touch $(STAMP)

data:
	bash scripts/ensure-data.sh

demo: $(STAMP)
	VENV=$(VENV) bash scripts/demo.sh

test: $(STAMP)
	-bash scripts/ensure-data.sh
	-bash scripts/ensure-browser.sh
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
