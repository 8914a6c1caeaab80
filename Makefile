# Two commands matter (see README): `make serve` and `make test`; CI (.ci/run) runs
# `make lint test`. Targets that run Python set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every script of the worker's JS runtime, subfolders included: `make lint` syntax-checks them.
RUNTIME_JS := $(shell find zako_server/worker/runtime -name "*.js" -not -path "*/node_modules/*" | sort)
# buf breaking compares the contract with the newest release tag reachable from HEAD, or,
# in a checkout without tags, with the commit v0.1.0 was cut from (override:
# `make lint RELEASE_REF=v0.2.0`).
RELEASE_BASE := f4d54ae6b20da48ac3bf183ff7bf44cdaf932d1b
RELEASE_REF ?= $(or $(shell git describe --tags --abbrev=0 --match 'v[0-9]*' HEAD 2>/dev/null),$(RELEASE_BASE))

.PHONY: setup serve test lint lint-python lint-format lint-types lint-proto lint-js gen bench clean

$(STAMP): pyproject.toml zako_server/jsdeps/package-lock.json
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	npm ci --prefix zako_server/jsdeps --no-audit --no-fund --loglevel=error
	touch $(STAMP)

setup: $(STAMP)

serve: $(STAMP)
	$(BIN)/zako-server $(ARGS)

# pytest exits 5 when it collects no test, so a run that tests nothing fails too.
test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run $(ARGS)

# Each step is its own target, so `make -k lint` reports every failing one.
lint: lint-python lint-format lint-types lint-proto lint-js

lint-python: $(STAMP)
	$(BIN)/ruff check .

lint-format: $(STAMP)
	$(BIN)/ruff format --check .

# Strict on the SDK (it ships py.typed); the server at the settings in pyproject.toml.
lint-types: $(STAMP)
	$(BIN)/mypy --strict zako_sdk
	$(BIN)/mypy zako_server

# google/rpc (imported by the contract) comes from the installed package: scripts/
# proto_deps.py links it where buf.yaml looks; a release older than that import has
# no such module, hence --exclude-path.
lint-proto: $(STAMP)
	$(BIN)/python scripts/proto_deps.py >/dev/null
	$(BIN)/buf lint
	$(BIN)/buf breaking --against '.git#ref=$(RELEASE_REF),depth=1000' \
		--exclude-path build/proto-deps/google

lint-js:
	@test -n "$(RUNTIME_JS)" || { echo "no runtime scripts found" >&2; exit 1; }
	for script in $(RUNTIME_JS); do node --check "$$script" || exit 1; done

gen: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) build *.egg-info
