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
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ] \
  || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  # The project itself, editable: the `sage` command, and imports that need no sys.path edits.
  .venv/bin/python -m pip install --quiet --no-deps -e .
  touch "$stamp"
fi

.venv/bin/python -m models migrate

# Front-end assets: static/vendor/ (Alpine) and static/build/ (the React islands bundled by
# esbuild) are committed, so Docker and Node-less machines serve them; they are rebuilt here
# when Node is present and the lock file or an island's source changed.
if [ -f package.json ] && command -v npm >/dev/null 2>&1; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --silent
  fi
  bundle=static/build/session.js
  if [ ! -f static/vendor/alpine.min.js ] || [ ! -f "$bundle" ] \
    || [ node_modules/.package-lock.json -nt "$bundle" ] \
    || [ -n "$(find static/src -newer "$bundle" -print -quit)" ]; then
    npm run --silent build
  fi
fi

# The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium \
    || echo "setup: could not install chromium; browser tests skip locally and fail in CI" >&2
fi
