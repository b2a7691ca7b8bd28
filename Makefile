# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facemask-installed
DEMO ?= demo
PEOPLE ?= 300

.PHONY: install demo test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(DEMO)/train/train.csv: | $(STAMP)
	$(BIN)/facemask demo-data $(DEMO) --people $(PEOPLE)

demo: $(STAMP) $(DEMO)/train/train.csv
	$(BIN)/facemask train -c configs/demo.yaml data.root=$(DEMO)/train train.output_dir=$(DEMO)/runs
	run=$$(ls -td $(DEMO)/runs/demo-* | head -n 1) && \
	$(BIN)/facemask eval $$run -q && \
	$(BIN)/facemask predict $$run --data $(DEMO)/eval --out $$run/submission.csv --tta flip -q && \
	$(BIN)/facemask score $$run/submission.csv $(DEMO)/eval_answers.csv && \
	echo "demo run: $$run"

test: $(STAMP)
	$(BIN)/ruff check facemask tests benchmarks
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO) runs .pytest_cache
