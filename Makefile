# The README's two commands are `make run` and `make test`.
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: run setup test lint format migrate seed clean

# honcho hands each Procfile process PORT (5000 unless PORT is set): the web listens on it, so the
# base port is the README's 8000 unless you set PORT yourself.
WEB_PORT ?= $(or $(PORT),8000)

run: setup ## set everything up, then start web and worker together
	PORT=$(WEB_PORT) $(PY) -m honcho start

setup: ## services, virtualenv, dependencies, database
	bash scripts/setup.sh

test: setup ## the whole test suite against the real services (own database and Redis db)
	$(PY) -m pytest

lint: ## ruff and mypy; then ESLint on the islands and their unit tests (Node's test runner) when npm is here
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	@if command -v npm >/dev/null 2>&1; then \
		if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
			npm ci --no-audit --no-fund --silent; \
		fi; \
		npm run --silent lint && npm test --silent; \
	elif [ "$$CI" = "true" ]; then \
		echo "make lint: npm is missing, and CI must run ESLint and the front-end tests" >&2; exit 1; \
	else \
		echo "make lint: npm is missing: skipped ESLint and the front-end tests (CI runs them)"; \
	fi

format:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

migrate:
	$(PY) -m models migrate

seed: setup ## demo users, a shared team and finished sessions run by the real agents
	$(PY) scripts/seed_test_data.py

clean:
	rm -rf .venv .pytest_cache instance
