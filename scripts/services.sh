#!/usr/bin/env bash
# Make the services the integration tests use ready on this machine: PostgreSQL 15 (+ PostGIS) on 127.0.0.1:5432.
# Idempotent: installs only what is missing, starts only what is down. Needs root (apt-get) for a first install.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  echo "services: installing PostgreSQL 15" >&2
  apt_install postgresql-15
fi
if ! dpkg -s postgresql-15-postgis-3 >/dev/null 2>&1; then
  echo "services: installing PostGIS (postgresql-15-postgis-3)" >&2
  apt_install postgresql-15-postgis-3
fi

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
  for _ in $(seq 1 60); do
    pg_up && break
    sleep 0.5
  done
fi
pg_up || { echo "services: PostgreSQL on 127.0.0.1:5432 did not come up" >&2; exit 1; }
echo "services: PostgreSQL ${version} ready on 127.0.0.1:5432" >&2
