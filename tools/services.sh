#!/usr/bin/env bash
# Install (if missing) and start what the integration tests need. Idempotent; Debian packages only.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
# Prometheus, promtool and Alertmanager for the monitoring tests: run by the tests on 127.0.0.1, never as system services
[ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || need+=(prometheus)
[ -x /usr/bin/prometheus-alertmanager ] || need+=(prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "services.sh: need root to apt-get install ${need[*]}" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "services: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}')"

# PostgreSQL 15 for the storage tests: a local cluster on 127.0.0.1:5432, a role and a database for tests.
# The tests read TRADING_TEST_PG_URL (the Makefile sets it to the URL below); the password is a local test one.
PG_VER=15
PG_ROLE=trading PG_PASS=trading PG_DB=trading_test
if [ ! -x /usr/lib/postgresql/$PG_VER/bin/postgres ]; then
  [ "$(id -u)" = 0 ] || { echo "services.sh: need root to apt-get install postgresql-$PG_VER" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-$PG_VER postgresql-client-$PG_VER >/dev/null
fi
pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VER main" || pg_createcluster $PG_VER main >/dev/null
pg_ctlcluster $PG_VER main status >/dev/null 2>&1 || pg_ctlcluster $PG_VER main start
for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "services.sh: PostgreSQL $PG_VER did not start" >&2; exit 1; }
pg_sql() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
pg_sql -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASS'; END IF; END \$\$;"
# tests and benchmarks drop their scratch databases WITH (FORCE), which may need to end autovacuum workers
pg_sql -c "GRANT pg_signal_backend TO $PG_ROLE"
[ "$(pg_sql -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" = 1 ] || runuser -u postgres -- createdb -O "$PG_ROLE" "$PG_DB"
echo "services: postgresql $(pg_sql -c 'SHOW server_version') at TRADING_TEST_PG_URL=postgresql+psycopg://$PG_ROLE:****@127.0.0.1:5432/$PG_DB"
