#!/usr/bin/env bash
# The services the product needs on this machine: PostgreSQL (127.0.0.1:5432, a superuser role
# for the current user, trusted on loopback), Redis (127.0.0.1:6379) and RabbitMQ
# (127.0.0.1:5672, guest/guest, for BROKER_URL=amqp://). What is missing is installed with
# apt-get (a fresh Debian machine has none of them); what is installed but down is started.
# Safe to run again: it only does what is missing.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "services: need root (or sudo) to run: $*" >&2
    return 1
  fi
}

apt_updated=""
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "services: $* missing and no apt-get here; install it by hand" >&2
    return 1
  fi
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq && apt_updated=1; fi
  echo "installing $*"
  # policy-rc.d-free installs start nothing under systemd-less containers; we start them below.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for SECONDS COMMAND...
  local limit=$1
  shift
  for _ in $(seq 1 "$limit"); do "$@" && return 0; sleep 1; done
  return 1
}

# --- PostgreSQL ---------------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  apt_install postgresql postgresql-client
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "starting PostgreSQL"
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for 30 pg_isready -q -h 127.0.0.1 -p 5432
fi
me="$(id -un)"
if ! psql -h 127.0.0.1 -U "$me" -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  # A fresh Debian cluster knows only `postgres` and asks for passwords over TCP: add a superuser
  # role for this user and trust it on loopback (a developer machine, as the README says).
  echo "creating the PostgreSQL role $me, trusted on 127.0.0.1"
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  as_root runuser -u postgres -- psql -qc "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$me') THEN CREATE ROLE \"$me\" SUPERUSER LOGIN; END IF; END\$\$;"
  if ! as_root grep -q "^host all $me 127.0.0.1/32 trust" "$hba"; then
    as_root sed -i "1i host all $me 127.0.0.1/32 trust\nhost all $me ::1/128 trust" "$hba"
    as_root runuser -u postgres -- psql -qc 'SELECT pg_reload_conf()' >/dev/null
  fi
fi

# --- Redis --------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for 30 redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1
fi

# --- RabbitMQ (only the amqp:// broker uses it; never fatal for the rest) ------------------
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  apt_install rabbitmq-server || echo "services: RabbitMQ not installed; BROKER_URL=amqp:// will not work" >&2
fi
if command -v rabbitmq-server >/dev/null 2>&1 && ! port_open 5672; then
  echo "starting RabbitMQ"
  as_root rabbitmq-server -detached || true
  wait_for 60 port_open 5672 || echo "services: RabbitMQ did not start on 127.0.0.1:5672" >&2
fi
