#!/usr/bin/env bash
# The packages as an adopter gets them: packs every src/ package into a local folder feed
# (artifacts/packages), checks their metadata, builds samples/ExistingApp from that feed only
# (samples/nuget.config), runs it end to end (record -> background flush -> the emulator's total),
# then installs the `usagebilling` tool from the feed into a temp tool path and runs it.
# Prints one "PASS: …" / "FAIL: …" line per check (scripts/test.sh counts them) and exits non-zero
# when any check failed.
# Usage: scripts/package-smoke.sh [--no-build]   (--no-build: the solution is already built in Release)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

pack_args=()
[ "${1:-}" = "--no-build" ] && pack_args+=(--no-build)

passed=0
failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1${2:+ — $2}"; failed=$((failed + 1)); }
finish() {
  echo "== package smoke: $passed checks passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

feed=$root/artifacts/packages
work=$(mktemp -d /tmp/usagebilling-smoke.XXXXXX)
sample_pid=
cleanup() {
  if [ -n "$sample_pid" ]; then kill "$sample_pid" 2>/dev/null; wait "$sample_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- Pack ------------------------------------------------------------------------------------
version=$(dotnet msbuild src/UsageBilling/UsageBilling.csproj -getProperty:PackageVersion)
echo "== packing $version into artifacts/packages"
rm -rf "$feed"
if dotnet pack UsageBilling.slnx -c Release "${pack_args[@]}" -nologo -v quiet -warnaserror \
     -p:WarnOnPackingNonPackableProject=false -o "$feed" >"$work/pack.log" 2>&1; then
  pass "dotnet pack"
else
  cat "$work/pack.log"; fail "dotnet pack"; finish
fi

# Every packable project under src/ (a new one is picked up without editing this script).
for proj in src/*/*.csproj; do
  props=$(dotnet msbuild "$proj" -getProperty:IsPackable -getProperty:PackageId -getProperty:PackAsTool)
  [ "$(jq -r .Properties.IsPackable <<<"$props")" = "true" ] || continue
  id=$(jq -r .Properties.PackageId <<<"$props")
  tool=$(jq -r .Properties.PackAsTool <<<"$props")
  nupkg=$feed/$id.$version.nupkg
  problems=()
  [ -f "$nupkg" ] || { fail "package $id" "no $nupkg"; continue; }
  [ -f "$feed/$id.$version.snupkg" ] || problems+=("no symbol package")
  nuspec=$(unzip -p "$nupkg" "$id.nuspec")
  for want in '<license type="expression">MIT</license>' '<readme>README.md</readme>' '<repository type="git" url="http' '<description>' '<authors>' '<tags>'; do
    grep -qF "$want" <<<"$nuspec" || problems+=("nuspec lacks $want")
  done
  grep -qF '<description>Package Description</description>' <<<"$nuspec" && problems+=("no Description in the project file")
  unzip -l "$nupkg" README.md >/dev/null 2>&1 || problems+=("no README.md inside")
  if [ "$tool" = "true" ]; then
    grep -q '<packageType name="DotnetTool"' <<<"$nuspec" || problems+=("not a .NET tool package")
  else
    unzip -l "$nupkg" "lib/net10.0/$id.xml" >/dev/null 2>&1 || problems+=("no XML docs in lib/net10.0")
  fi
  if [ ${#problems[@]} -eq 0 ]; then pass "package $id $version"; else fail "package $id" "$(IFS=';'; echo "${problems[*]}")"; fi
done

# --- docs/getting-started.md stays true to the sample -------------------------------------------
# Each code block marked "<!-- from FILE -->" must consist of lines of FILE (compared without indentation).
if python3 - >"$work/doc-check.log" 2>&1 <<'PY'
import pathlib, re, sys
doc = pathlib.Path("docs/getting-started.md").read_text(encoding="utf-8")
blocks = re.findall(r"<!-- from (\S+) -->\n```[a-z]*\n(.*?)\n```", doc, re.S)
problems = []
for path, body in blocks:
    file = pathlib.Path(path)
    if not file.is_file():
        problems.append(f"{path}: no such file")
        continue
    lines = {line.strip() for line in file.read_text(encoding="utf-8-sig").splitlines()}
    problems += [f"{path} lacks: {line.strip()}" for line in body.splitlines() if line.strip() and line.strip() not in lines]
print(f"{len(blocks)} code blocks checked against the sample")
print("\n".join(problems))
sys.exit(1 if problems or not blocks else 0)
PY
then pass "docs/getting-started.md code is the sample's ($(head -1 "$work/doc-check.log" | cut -d' ' -f1) blocks)"; else cat "$work/doc-check.log"; fail "docs/getting-started.md code is the sample's"; fi

# --- The sample, built from the packages only --------------------------------------------------
# A restore folder of its own, so a stale UsageBilling $version from an earlier pack is never reused;
# third-party packages come from the machine's global folder (fallback) or nuget.org.
global=$(dotnet nuget locals global-packages --list | sed 's/^global-packages: //')
global=${global%/}
rm -rf "$global"/usagebilling "$global"/usagebilling.*
packages=$root/artifacts/sample-packages
rm -rf "$packages"
sample=samples/ExistingApp
sample_built=0
rm -rf "$sample/bin" "$sample/obj"
echo "== building $sample from artifacts/packages"
if grep -q "<ProjectReference" "$sample/ExistingApp.csproj"; then
  fail "sample has no ProjectReference" "$sample/ExistingApp.csproj references projects"
elif dotnet build "$sample" -c Release -nologo -v quiet -warnaserror \
       -p:RestorePackagesPath="$packages" -p:RestoreFallbackFolders="$global" >"$work/sample-build.log" 2>&1; then
  # The bits the sample runs are the ones just packed, restored as packages.
  same=1
  for id in UsageBilling UsageBilling.EntityFrameworkCore UsageBilling.StripeEmulator; do
    a=$(unzip -p "$feed/$id.$version.nupkg" "lib/net10.0/$id.dll" | sha256sum | cut -d' ' -f1)
    b=$(sha256sum "$sample/bin/Release/net10.0/$id.dll" | cut -d' ' -f1)
    [ "$a" = "$b" ] || same=0
  done
  projects=$(jq '[.libraries[] | select(.type == "project")] | length' "$sample/obj/project.assets.json")
  if [ "$same" -eq 1 ] && [ "$projects" -eq 0 ]; then pass "sample builds from the packages"; sample_built=1; else fail "sample builds from the packages" "assemblies differ from the packed ones or project references restored"; fi
else
  cat "$work/sample-build.log"; fail "sample builds from the packages"
fi

# --- The sample, end to end -------------------------------------------------------------------
[ "$sample_built" -eq 1 ] || { fail "sample end to end" "not run: the sample did not build"; fail "usagebilling on the sample" "not run"; finish; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
app_port=$(free_port)
stripe_port=$(free_port)
stripe_admin_token=emu_admin_smoke_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
app=http://127.0.0.1:$app_port
db=$work/app.db
(cd "$sample" && exec dotnet bin/Release/net10.0/ExistingApp.dll --urls "$app" --LocalStripe:Port="$stripe_port" --LocalStripe:AdminToken="$stripe_admin_token" \
   --ConnectionStrings:App="Data Source=$db" --UsageBilling:Flush:Interval=00:00:01) >"$work/sample.log" 2>&1 &
sample_pid=$!
e2e() {
  local i account id customer usage total now
  for i in $(seq 1 60); do curl -sf -m 2 "$app/health" >/dev/null && break; sleep 0.5; done
  account=$(curl -sf -m 20 -X POST "$app/accounts" -H 'Content-Type: application/json' -d '{"email":"smoke@example.com"}') || { echo "sign-up failed"; return 1; }
  id=$(jq -r .id <<<"$account")
  echo "$id" >"$work/account-id"
  customer=$(jq -r .stripeCustomerId <<<"$account")
  # Three billable calls, the last one repeated with its Idempotency-Key: three units.
  for key in r1 r2 r3 r3; do
    curl -sf -m 10 -X POST "$app/accounts/$id/reports" -H "Idempotency-Key: $key" >/dev/null || { echo "billable call $key failed"; return 1; }
  done
  for i in $(seq 1 60); do
    usage=$(curl -sf -m 5 "$app/accounts/$id/usage") || { echo "usage failed"; return 1; }
    [ "$(jq '.meters[] | select(.meter == "reports") | .pendingQuantity' <<<"$usage")" = "0" ] && break
    sleep 0.5
  done
  echo "usage: $(jq -c '.meters[] | select(.meter == "reports") | {used, included, pendingQuantity, reportedAsOf}' <<<"$usage")"
  [ "$(jq '.meters[] | select(.meter == "reports") | .used' <<<"$usage")" = "3" ] || { echo "expected used 3"; return 1; }
  [ "$(jq '.meters[] | select(.meter == "reports") | .pendingQuantity' <<<"$usage")" = "0" ] || { echo "not flushed"; return 1; }
  now=$(date +%s)
  total=$(curl -sf -m 5 -H "Authorization: Bearer $stripe_admin_token" "http://127.0.0.1:$stripe_port/_emulator/totals?customer=$customer&meter=reports&start=$((now - 86400 * 40))&end=$((now + 3600))" | jq .value)
  echo "emulator total for $customer: $total"
  [ "$total" = "3" ]
}
if e2e; then pass "sample end to end: record -> flush -> Stripe total 3"; else tail -20 "$work/sample.log"; fail "sample end to end"; fi
kill "$sample_pid" 2>/dev/null; wait "$sample_pid" 2>/dev/null; sample_pid=

# --- The tool, installed from the feed ------------------------------------------------------------
tools=$work/tools
echo "== installing UsageBilling.Cli $version into a temp tool path"
if NUGET_PACKAGES=$packages dotnet tool install UsageBilling.Cli --version "$version" --tool-path "$tools" \
     --configfile samples/nuget.config >"$work/tool.log" 2>&1 && [ -x "$tools/usagebilling" ]; then
  pass "dotnet tool install UsageBilling.Cli (command usagebilling)"
  # A fresh database through the tool's own schema, then the sample's database after its flush.
  if "$tools/usagebilling" db migrate --connection "Data Source=$work/tool.db" >"$work/migrate.log" 2>&1 \
     && "$tools/usagebilling" status --connection "Data Source=$work/tool.db" >"$work/status.log" 2>&1; then
    pass "usagebilling db migrate + status on a temp SQLite database"
  else
    cat "$work/migrate.log" "$work/status.log" 2>/dev/null; fail "usagebilling db migrate + status"
  fi
  if status=$("$tools/usagebilling" status --json --connection "Data Source=$db" 2>&1) \
     && [ "$(jq '.reports.sent >= 1 and .reports.dead == 0 and .reports.pending == 0' <<<"$status")" = "true" ] \
     && [ "$(jq .pending_events <<<"$status")" = "0" ]; then
    # One report, or more when a flush (every second here) ran between the calls: the emulator total above is what counts.
    pass "usagebilling status --json on the sample's database: $(jq .reports.sent <<<"$status") report(s) sent, 0 pending, 0 dead"
  else
    echo "$status"; fail "usagebilling status on the sample's database"
  fi
  # The ingestion endpoint of the sample, with a key the tool created in the sample's database.
  ingest() {
    local key secret account code body
    account=$(cat "$work/account-id")
    key=$("$tools/usagebilling" api-keys create --name smoke --account "$account" --connection "Data Source=$db" 2>&1) || { echo "$key"; return 1; }
    secret=$(grep -o 'ubk_[A-Za-z0-9_-]*' <<<"$key" | head -1)
    [ -n "$secret" ] || { echo "no secret printed: $key"; return 1; }
    (cd "$sample" && exec dotnet bin/Release/net10.0/ExistingApp.dll --urls "$app" --LocalStripe:Port="$stripe_port" \
       --ConnectionStrings:App="Data Source=$db" --UsageBilling:Flush:Enabled=false) >"$work/sample2.log" 2>&1 &
    sample_pid=$!
    for i in $(seq 1 60); do curl -sf -m 2 "$app/health" >/dev/null && break; sleep 0.5; done
    body="{\"events\":[{\"account_id\":\"$account\",\"meter\":\"reports\",\"quantity\":2,\"idempotency_key\":\"ingest-1\"}]}"
    code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST "$app/api/v1/usage" -H 'Content-Type: application/json' -d "$body")
    [ "$code" = "401" ] || { echo "without a key: HTTP $code"; return 1; }
    for want in recorded duplicate; do
      got=$(curl -sf -m 10 -X POST "$app/api/v1/usage" -H 'Content-Type: application/json' -H "Authorization: Bearer $secret" -d "$body" | jq -r '.results[0].status')
      [ "$got" = "$want" ] || { echo "expected $want, got '$got'"; return 1; }
    done
    usage=$(curl -sf -m 5 "$app/accounts/$account/usage") || return 1
    [ "$(jq '.meters[] | select(.meter == "reports") | .used' <<<"$usage")" = "5" ] || { echo "expected used 5: $usage"; return 1; }
  }
  if ingest; then pass "sample ingestion API: 401 without a key, recorded, then duplicate, with a key from usagebilling api-keys create"; else tail -20 "$work/sample2.log" 2>/dev/null; fail "sample ingestion API"; fi
  if [ -n "$sample_pid" ]; then kill "$sample_pid" 2>/dev/null; wait "$sample_pid" 2>/dev/null; sample_pid=; fi
else
  cat "$work/tool.log"; fail "dotnet tool install UsageBilling.Cli"
fi

finish
