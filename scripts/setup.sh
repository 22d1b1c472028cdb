#!/usr/bin/env bash
# Install everything the product needs on a fresh machine: services running, Python deps in
# .venv, the database created and migrated. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.deps-stamp
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  touch "$stamp"
fi

.venv/bin/python -m models migrate

# Front-end assets: static/vendor/ is committed (so Docker and Node-less machines serve it), and
# rebuilt here from the locked npm packages when Node is present and the lock file changed.
if [ -f package.json ] && command -v npm >/dev/null 2>&1; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --silent
  fi
  if [ ! -f static/vendor/alpine.min.js ] || [ node_modules/.package-lock.json -nt static/vendor/alpine.min.js ]; then
    npm run --silent build
  fi
fi
