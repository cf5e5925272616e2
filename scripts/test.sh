#!/usr/bin/env bash
# Runs every test of the solution: installs and starts what the tests need (PostgreSQL,
# Chromium), creates the test role, exports the connection string, builds, checks the packages
# (scripts/package-smoke.sh: pack, the sample built from the packages, the installed tool), then `dotnet test`.
# Usage: scripts/test.sh [extra dotnet test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
need_pkg() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ $apt_updated -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    echo "== installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# --- PostgreSQL -------------------------------------------------------------------------
need_pkg postgresql
if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  as_root pg_createcluster "$ver" main
fi
read -r pg_ver pg_name pg_port pg_status _ < <(pg_lsclusters -h | head -1)
if [ "$pg_status" != "online" ]; then
  as_root pg_ctlcluster "$pg_ver" "$pg_name" start
fi
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p "$pg_port" && break; sleep 1; done
pg_password=${USAGEBILLING_TEST_PG_PASSWORD:-usagebilling}
as_root runuser -u postgres -- psql -q -p "$pg_port" -v ON_ERROR_STOP=1 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'usagebilling') THEN
    CREATE ROLE usagebilling LOGIN CREATEDB PASSWORD '$pg_password';
  ELSE
    ALTER ROLE usagebilling LOGIN CREATEDB PASSWORD '$pg_password';
  END IF;
END \$\$;
-- Tests drop their databases WITH (FORCE), which must also end autovacuum workers busy in them.
GRANT pg_signal_backend TO usagebilling;
-- The summary benchmark checkpoints after its bulk fold (PostgreSQL 15 has this role).
DO \$\$ BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pg_checkpoint') THEN GRANT pg_checkpoint TO usagebilling; END IF;
END \$\$;
SQL
export USAGEBILLING_TEST_PG="Host=127.0.0.1;Port=$pg_port;Username=usagebilling;Password=$pg_password;Database=postgres"
echo "== PostgreSQL $pg_ver on 127.0.0.1:$pg_port"

# --- Chromium (browser tests) -------------------------------------------------------------
need_pkg chromium
export USAGEBILLING_CHROMIUM=${USAGEBILLING_CHROMIUM:-/usr/bin/chromium}

# --- Tests --------------------------------------------------------------------------------
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet tool restore >/dev/null
dotnet build UsageBilling.slnx -c Release -warnaserror -nologo -v quiet
set +e
bash scripts/package-smoke.sh --no-build 2>&1 | tee /tmp/usagebilling-smoke.log
smoke_status=${PIPESTATUS[0]}
dotnet test UsageBilling.slnx -c Release --no-build --logger "console;verbosity=normal" "$@" 2>&1 | tee /tmp/usagebilling-test.log
status=${PIPESTATUS[0]}
set -e
[ "$status" -ne 0 ] || status=$smoke_status
# The failed tests again with the start of their messages, next to the closing line (a log's tail is often all one sees).
if grep -qE '^[[:space:]]+Failed [A-Za-z_]' /tmp/usagebilling-test.log; then
  echo "== failed tests:"
  grep -E -A8 '^[[:space:]]+Failed [A-Za-z_]' /tmp/usagebilling-test.log | cut -c1-400 || true
fi
grep -E '^FAIL: ' /tmp/usagebilling-smoke.log || true
# One closing line for the whole run, summed over the test assemblies and the package checks (PASS:/FAIL: lines).
smoke_passed=$(grep -c '^PASS: ' /tmp/usagebilling-smoke.log || true)
smoke_failed=$(grep -c '^FAIL: ' /tmp/usagebilling-smoke.log || true)
awk -v sp="$smoke_passed" -v sf="$smoke_failed" \
  '/^[[:space:]]+Passed: [0-9]+$/ { p += $2 } /^[[:space:]]+Failed: [0-9]+$/ { f += $2 } /^[[:space:]]+Skipped: [0-9]+$/ { s += $2 }
     END { printf "%d passed, %d failed, %d skipped\n", p + sp, f + sf, s }' /tmp/usagebilling-test.log
exit "$status"
