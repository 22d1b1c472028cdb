# The README's two commands are `make run` and `make test`.
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: run setup test lint format migrate seed clean

run: setup ## set everything up, then start web and worker together
	$(PY) -m honcho start

setup: ## services, virtualenv, dependencies, database
	bash scripts/setup.sh

test: setup ## the whole test suite against the real services (own database and Redis db)
	$(PY) -m pytest

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

migrate:
	$(PY) -m models migrate

seed: setup ## demo users, a shared team and finished sessions run by the real agents
	$(PY) scripts/seed_test_data.py

clean:
	rm -rf .venv .pytest_cache instance
