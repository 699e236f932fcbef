# The two commands a newcomer runs: `make bench` (the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= bench-out/quick

.PHONY: venv bench test test-slow demo bench-full bench-plan bench-micro lint typecheck clean brokers-up brokers-down brokers-status probe report

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,test]'
	touch $@

venv: $(VENV)/.installed

## main job: the quick benchmark of every reachable backend, then its report
bench: venv
	$(BIN)/anytask bench run --profile quick --out $(OUT)

## the full reference run: the full profile without its soak (~35 min on a quiet 2-core machine; the soak adds
## ~40 min, so it is measured apart: `anytask bench run --profile soak --out results/soak`), measured into
## bench-out/full (its work/ dir of stamps and logs stays there); then run.json and raw/ replace
## results/reference's, the committed soak (results/soak) is merged in and the report regenerated
FULL_SCENARIOS ?= throughput-noop,throughput-io,throughput-cpu,payload,latency-sporadic,latency-steady,scale,reliability-kill,reliability-restart
bench-full: venv
	$(BIN)/anytask bench run --profile full --scenarios $(FULL_SCENARIOS) --out bench-out/full --no-report
	rm -rf results/reference/raw
	cp -r bench-out/full/run.json bench-out/full/raw results/reference/
	$(MAKE) merge-soak

## what bench-full would run and its estimated time (runs nothing)
bench-plan: venv
	$(BIN)/anytask bench run --profile full --scenarios $(FULL_SCENARIOS) --dry-run

## add a separately measured soak run (SOAK, default results/soak; e.g. from `anytask bench run --profile soak`)
## to the reference run's run.json (replacing its soak records, if any) and regenerate the reference report
SOAK ?= results/soak
.PHONY: merge-soak
merge-soak: venv
	$(BIN)/anytask bench merge $(SOAK) --into results/reference --note "soak measured separately ($(SOAK)): \
	100,000 tasks per backend, too long to repeat with every full run"
	$(BIN)/anytask report results/reference

## micro-benchmarks (pytest-benchmark, not part of make test): facade submit vs native submit per
## backend whose broker answers
bench-micro: venv
	$(BIN)/python -m pytest benchmarks -q -p no:cacheprovider --benchmark-json=results/reference/micro.json

## the test suite (conformance suite over all ten backends + unit tests); tests marked slow are left
## to test-slow (e.g. the kill -9 runs in the libraries' default worker configs)
test: venv
	$(BIN)/python -m pytest -m "not slow"

test-slow: venv
	$(BIN)/python -m pytest -m slow

demo: venv
	$(BIN)/anytask demo

probe: venv
	$(BIN)/anytask probe --out results/reference/features.json

report: venv
	$(BIN)/anytask report results/reference

brokers-up: venv
	$(BIN)/anytask brokers up

brokers-down: venv
	$(BIN)/anytask brokers down

brokers-status: venv
	$(BIN)/anytask brokers status

typecheck: venv
	$(BIN)/python -m mypy --strict anytask/facade

lint: venv
	$(BIN)/python -m ruff check anytask tests

clean:
	rm -rf $(VENV) bench-out .pytest_cache .mypy_cache
