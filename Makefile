# Kith: `make run` sets everything up and serves; `make test` sets up and runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export KITH_HOST ?= 127.0.0.1
export KITH_PORT ?= 8000

.PHONY: run test setup static chromium wrk lint typecheck test-sqlite test-postgres bench clean migration

setup: $(VENV)/.stamp-deps static

$(VENV)/.stamp-deps: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

node_modules/.stamp-npm: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

static: node_modules/.stamp-npm
	mkdir -p src/kith/web/static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js src/kith/web/static/vendor/htmx.min.js

# Debian's Chromium for the browser tests (never `playwright install`: it downloads a browser).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Debian's wrk, the HTTP load generator of bench/api.py.
wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

run: setup
	$(BIN)/kith migrate
	$(BIN)/kith demo
	@echo "Kith on http://$(KITH_HOST):$(KITH_PORT)/ — sign in as 'gardener' (admin), password 'kith-demo-garden'"
	$(BIN)/kith serve

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: setup chromium
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	KITH_TEST_REDIS_URL="$$(scripts/test-redis-url)" $(BIN)/python -m pytest -q -p no:cacheprovider
	KITH_TEST_DB=postgres KITH_TEST_POSTGRES_URL="$$(scripts/test-postgres-url)" \
		KITH_TEST_REDIS_URL="$$(scripts/test-redis-url)" \
		$(BIN)/python -m pytest -q -p no:cacheprovider -m "not browser"

test-sqlite: setup
	$(BIN)/python -m pytest -q

test-postgres: setup
	KITH_TEST_DB=postgres KITH_TEST_POSTGRES_URL="$$(scripts/test-postgres-url)" $(BIN)/python -m pytest -q

bench: setup wrk
	$(BIN)/python bench/timelines.py
	$(BIN)/python bench/api.py

# While the schema is young: rebuild the single initial migration from the models.
migration: setup
	# Regenerate 0001 from the models in a scratch copy of the migrations (later, hand-written
	# migrations depend on 0001 and must not be touched), then move only 0001 back.
	rm -rf /tmp/kith-migration && mkdir -p /tmp/kith-migration
	cp -r src/kith/migrations /tmp/kith-migration/migrations
	rm -f /tmp/kith-migration/migrations/versions/0*.py
	$(BIN)/python -c "from alembic import command; from kith.migrate import alembic_config; \
		cfg = alembic_config('sqlite+aiosqlite:////tmp/kith-migration/scratch.db'); \
		cfg.set_main_option('script_location', '/tmp/kith-migration/migrations'); \
		command.revision(cfg, message='initial schema', autogenerate=True, rev_id='0001')"
	mv /tmp/kith-migration/migrations/versions/0001_initial_schema.py src/kith/migrations/versions/
	$(BIN)/ruff format src/kith/migrations/versions

clean:
	rm -rf $(VENV) node_modules src/kith/web/static/vendor var
