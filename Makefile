# make demo: set up and run the gate on the bundled fixtures.  make test: set up and run the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install fixtures bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,faces]'
	touch $(STAMP)

install: $(STAMP)

fixtures/outputs: | $(STAMP)
	$(BIN)/python fixtures/make_fixtures.py

fixtures: fixtures/outputs

demo: $(STAMP) fixtures/outputs
	@rm -rf reports/demo
	$(BIN)/sdeval gate fixtures/outputs --policy fixtures/demo-policy.toml --out reports/demo; \
	  code=$$?; echo "sdeval gate exited $$code (0 pass, 1 gate failed, 2 usage/input error, 3 internal error)"; \
	  test -f reports/demo/summary.json && ls reports/demo

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) reports .pytest_cache
