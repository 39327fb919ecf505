#!/usr/bin/env bash
# Make the services the integration tests use ready on this machine: PostgreSQL 15 (+ PostGIS) on 127.0.0.1:5432 and
# RabbitMQ on 127.0.0.1:5672 (guest/guest, which RabbitMQ allows on loopback only), and the object storage emulators:
# moto's S3 server on 127.0.0.1:5000 and Azurite (Azure Blob, npm package, run with Node.js) on 127.0.0.1:10000;
# and Debian's chromium for the console's browser tests.
# Idempotent: installs only what is missing, starts only what is down, never restarts a running server.
# Needs root (apt-get) for a first install. Exits 1 when a service is still not up (after trying the others).
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
# The AMQP listener opens only once the broker has booted, so an open port means clients can connect.
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
# Each ensure_* runs under `||`, where bash ignores set -e: a failed step returns 1 explicitly.

wait_for() {  # wait_for CHECK SECONDS: poll every half second
  local check="$1" tries=$(($2 * 2))
  for _ in $(seq 1 "$tries"); do
    "$check" && return 0
    sleep 0.5
  done
  "$check"
}

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "services: installing PostgreSQL 15" >&2
    apt_install postgresql-15 || return 1
  fi
  if ! dpkg -s postgresql-15-postgis-3 >/dev/null 2>&1; then
    echo "services: installing PostGIS (postgresql-15-postgis-3)" >&2
    apt_install postgresql-15-postgis-3 || return 1
  fi
  local version hba
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  hba="/etc/postgresql/${version}/main/pg_hba.conf"
  # The tests connect as postgres over TCP without a password (a throwaway local server).
  if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    pg_up && pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
  if ! pg_up; then
    echo "services: starting PostgreSQL ${version}" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for pg_up 30 || true
  fi
  pg_up || { echo "services: PostgreSQL on 127.0.0.1:5432 did not come up" >&2; return 1; }
  echo "services: PostgreSQL ${version} ready on 127.0.0.1:5432" >&2
}

ensure_rabbitmq() {
  if rabbit_up; then
    echo "services: RabbitMQ ready on 127.0.0.1:5672" >&2
    return 0
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "services: installing RabbitMQ (rabbitmq-server)" >&2
    # Before the first start: a node name that resolves without DNS (a container's hostname may not) and
    # listeners on loopback only. Neither file is a dpkg conffile, so the install keeps them; existing ones stay.
    mkdir -p /etc/rabbitmq
    [ -e /etc/rabbitmq/rabbitmq-env.conf ] || printf '%s\n' 'NODENAME=rabbit@localhost' \
      'ERL_EPMD_ADDRESS=127.0.0.1' 'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' \
      > /etc/rabbitmq/rabbitmq-env.conf
    [ -e /etc/rabbitmq/rabbitmq.conf ] || echo 'listeners.tcp.local = 127.0.0.1:5672' > /etc/rabbitmq/rabbitmq.conf
    apt_install rabbitmq-server || return 1
  fi
  if ! rabbit_up; then  # apt may have started it (where policy-rc.d allows); start it only if not
    echo "services: starting RabbitMQ" >&2
    # No systemd here: the wrapper runs the node as the rabbitmq user, in the background.
    rabbitmq-server -detached || true
    wait_for rabbit_up 90 || true
  fi
  rabbit_up || { echo "services: RabbitMQ on 127.0.0.1:5672 did not come up" >&2; return 1; }
  echo "services: RabbitMQ ready on 127.0.0.1:5672" >&2
}

port_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
s3_up() { port_up 5000; }
azurite_up() { port_up 10000; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/geomill"
here="$(cd "$(dirname "$0")/.." && pwd)"

ensure_moto() {
  if ! s3_up; then
    local server="${MOTO_SERVER:-$here/.venv/bin/moto_server}"
    [ -x "$server" ] || server="$(command -v moto_server || true)"
    [ -n "$server" ] || { echo "services: moto_server not found (pip install 'moto[server]')" >&2; return 1; }
    echo "services: starting moto's S3 server" >&2
    mkdir -p "$cache"
    setsid "$server" -H 127.0.0.1 -p 5000 >>"$cache/moto.log" 2>&1 </dev/null &
    wait_for s3_up 30 || true
  fi
  s3_up || { echo "services: moto S3 on 127.0.0.1:5000 did not come up" >&2; return 1; }
  echo "services: moto S3 ready on 127.0.0.1:5000" >&2
}

ensure_azurite() {
  if ! azurite_up; then
    local bin="$cache/azurite/node_modules/.bin/azurite-blob"
    if [ ! -x "$bin" ]; then
      command -v npm >/dev/null 2>&1 || { echo "services: npm (Node.js) is needed for Azurite" >&2; return 1; }
      echo "services: installing Azurite (npm azurite@3)" >&2
      npm install --prefix "$cache/azurite" --no-audit --no-fund azurite@3 >/dev/null || return 1
    fi
    echo "services: starting Azurite" >&2
    setsid "$bin" --blobHost 127.0.0.1 --blobPort 10000 --location "$cache/azurite-data" --silent \
      --skipApiVersionCheck --loose >>"$cache/azurite.log" 2>&1 </dev/null &
    wait_for azurite_up 30 || true
  fi
  azurite_up || { echo "services: Azurite on 127.0.0.1:10000 did not come up" >&2; return 1; }
  echo "services: Azurite ready on 127.0.0.1:10000" >&2
}

# The browser of the console tests (tests/browser): Debian's chromium, driven by playwright without its own download.
ensure_chromium() {
  if ! command -v chromium >/dev/null 2>&1; then
    echo "services: installing chromium (the console's browser tests)" >&2
    apt_install chromium || return 1
  fi
}

status=0
ensure_chromium || status=1
ensure_postgres || status=1
ensure_rabbitmq || status=1
ensure_moto || status=1
ensure_azurite || status=1
exit "$status"
