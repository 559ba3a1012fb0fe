# The two commands: `make demo` (set up and run the pipeline on embedded defaults)
# and `make test` (the whole suite). Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test dev lint format install clean

demo: install
	$(BIN)/billing demo

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: install
	$(BIN)/pytest || [ $$? -eq 5 ]

dev: install
	$(BIN)/billing dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint dbt_project/models

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip check
	touch $(STAMP)

clean:
	rm -rf $(VENV) target .billing
