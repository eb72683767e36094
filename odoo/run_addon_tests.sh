#!/usr/bin/env bash
# Installs every addon of the project (odoo/*/__manifest__.py) on a fresh database, runs their
# own tests (tours included, in headless Chromium), checks the committed translation templates,
# then runs the project's REST contract suite (tests/contract/) against a live Odoo serving that
# database.
#
# Needs an Odoo 18 installation (not part of this repository) at ${ODOO_HOME:-/opt/odoo18}
# with odoo-bin and a python (${ODOO_PYTHON:-$ODOO_HOME/.venv/bin/python}); without one it says
# SKIPPED and exits 0. PostgreSQL must run locally with trust auth (PGHOST/PGPORT/PGUSER are
# honoured; default 127.0.0.1:5432 as the current user, or root).
set -euo pipefail

ODOO_HOME="${ODOO_HOME:-/opt/odoo18}"
ODOO_PYTHON="${ODOO_PYTHON:-$ODOO_HOME/.venv/bin/python}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROJECT_PYTHON="${PROJECT_PYTHON:-$REPO/.venv/bin/python}"

if [[ ! -f "$ODOO_HOME/odoo-bin" || ! -x "$ODOO_PYTHON" ]]; then
    echo "SKIPPED: Odoo 18 addon tests: no Odoo 18 at $ODOO_HOME (set ODOO_HOME)"
    exit 0
fi

export PGHOST="${PGHOST:-127.0.0.1}"
export PGPORT="${PGPORT:-5432}"
export PGUSER="${PGUSER:-$(id -un)}"
if [[ "$PGUSER" == "postgres" ]]; then
    echo "odoo refuses to run as the postgres database user; set PGUSER to another role" >&2
    exit 2
fi

# The tours need a Chrome-compatible browser; Debian's chromium is installed where missing (as
# root, from apt). Without one Odoo skips the tours, and the summary below lists them as skipped.
have_browser() {
    local bin
    for bin in google-chrome chromium chromium-browser google-chrome-stable; do
        command -v "$bin" >/dev/null 2>&1 && return 0
    done
    return 1
}
if ! have_browser; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing chromium (Debian) for the tours"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends chromium; } >/dev/null 2>&1 || true
    fi
    have_browser || echo "no Chrome-compatible browser: the tours will be SKIPPED"
fi
# Odoo drives the browser over websocket-client; without it in Odoo's python it skips the tours.
"$ODOO_PYTHON" -c "import websocket" 2>/dev/null \
    || echo "no websocket-client in Odoo's python: the tours will be SKIPPED" \
        "($ODOO_PYTHON -m pip install websocket-client)"

ADDONS="$(cd "$REPO/odoo" && for m in */__manifest__.py; do printf '%s,' "${m%%/*}"; done)"
ADDONS="${ADDONS%,}"
TEST_TAGS="$(printf '/%s,' ${ADDONS//,/ })"
TEST_TAGS="${TEST_TAGS%,}"

DB="ows_addon_test_$$_$(date +%s)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ows_addon_test.XXXXXX")"
ODOO_PID=""

free_port() {
    "$PROJECT_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

cleanup() {
    local rc=$?
    if [[ -n "$ODOO_PID" ]] && kill -0 "$ODOO_PID" 2>/dev/null; then
        kill "$ODOO_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$ODOO_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$ODOO_PID" 2>/dev/null || true
    fi
    dropdb --if-exists "$DB" >/dev/null 2>&1 || true
    if [[ $rc -ne 0 ]]; then
        echo "addon tests FAILED (logs kept in $WORK)" >&2
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT

ODOO_ARGS=(
    --db_host="$PGHOST" --db_port="$PGPORT" --db_user="$PGUSER"
    -d "$DB" --db-filter="^${DB}\$"
    --addons-path="$ODOO_HOME/odoo/addons,$REPO/odoo"
    --data-dir="$WORK/data"
    --http-interface=127.0.0.1
    --without-demo=all
    --max-cron-threads=0
    --log-level=info
)

createdb "$DB"

# 1. The addons' own tests (TransactionCase, HttpCase, tours, concurrency) on a fresh database.
TEST_PORT="$(free_port)"
TEST_LOG="$WORK/odoo-tests.log"
echo "== odoo: installing $ADDONS and running their tests (db $DB)"
set +e
"$ODOO_PYTHON" "$ODOO_HOME/odoo-bin" "${ODOO_ARGS[@]}" \
    --http-port="$TEST_PORT" --gevent-port="$(free_port)" \
    -i "$ADDONS" --test-tags "$TEST_TAGS" --stop-after-init \
    >"$TEST_LOG" 2>&1
odoo_rc=$?
set -e
grep -E "odoo\.tests\.(stats|result)" "$TEST_LOG" | sed -E 's/^.* (odoo\.tests\.)/\1/' || true
# odoo-bin may exit 0 with failed tests: the log decides too.
if [[ $odoo_rc -ne 0 ]] || grep -qE " (ERROR|CRITICAL) | FAIL: " "$TEST_LOG" \
        || ! grep -qE "odoo\.tests\.result: 0 failed, 0 error\(s\) of [1-9][0-9]* tests" "$TEST_LOG"; then
    echo "== odoo tests FAILED (exit $odoo_rc); errors:" >&2
    grep -E " (ERROR|CRITICAL) | FAIL: |^Traceback|Error: " -A12 "$TEST_LOG" | head -200 >&2 || true
    exit 1
fi
ran="$(grep -oE "of [0-9]+ tests" "$TEST_LOG" | tail -1 | grep -oE "[0-9]+")"
skipped="$(grep -cE " INFO .* skipped .* : " "$TEST_LOG" || true)"
echo "odoo addon tests ($ADDONS): $((ran - skipped)) passed, $skipped skipped, 0 failed"
# Tours run in a real browser (Debian's chromium); Odoo skips them only when none can start.
tours="$(grep -oE "TOUR [a-z0-9_]+ SUCCEEDED" "$TEST_LOG" | sort -u | awk '{print $2}' | paste -sd' ' || true)"
echo "browser tours passed: ${tours:-none}"
if grep -qE " INFO .* skipped .* : " "$TEST_LOG"; then
    echo "SKIPPED (said by Odoo):" >&2
    grep -E " INFO .* skipped .* : " "$TEST_LOG" | sed -E 's/^.* skipped /  /' >&2
fi

# 2. The committed translation templates are the ones Odoo exports from this code.
POT_ADDONS=""
for m in ${ADDONS//,/ }; do
    [[ -f "$REPO/odoo/$m/i18n/$m.pot" ]] && POT_ADDONS="$POT_ADDONS,$m"
done
if [[ -n "$POT_ADDONS" ]]; then
    mkdir -p "$WORK/pot"
    POT_MODULES="${POT_ADDONS#,}" POT_DIR="$WORK/pot" POT_FLAT=1 \
        "$ODOO_PYTHON" "$ODOO_HOME/odoo-bin" shell "${ODOO_ARGS[@]}" --no-http \
        <"$REPO/odoo/export_pot.py" >"$WORK/pot.out" 2>"$WORK/pot.log"
    stale=""
    for m in ${POT_ADDONS//,/ }; do
        if ! cmp -s "$WORK/pot/$m.pot" "$REPO/odoo/$m/i18n/$m.pot"; then
            stale="$stale $m"
            diff -u "$REPO/odoo/$m/i18n/$m.pot" "$WORK/pot/$m.pot" | head -30 >&2 || true
        fi
    done
    if [[ -n "$stale" ]]; then
        echo "translation templates out of date:$stale (regenerate with odoo/export_pot.py," \
            "then update i18n/de.po)" >&2
        exit 1
    fi
    echo "translation templates up to date:${POT_ADDONS//,/ }"
fi

# 3. Seed two bridges with a device each, then serve the database.
echo "== odoo: seeding two bridges"
"$ODOO_PYTHON" "$ODOO_HOME/odoo-bin" shell "${ODOO_ARGS[@]}" --no-http \
    <"$REPO/odoo/seed_contract.py" >"$WORK/seed.out" 2>"$WORK/seed.log"
grep -E "^CONTRACT_(ODOO_TOKEN|DEVICE_ID|FOREIGN_DEVICE_ID|FOREIGN_TOKEN)=" "$WORK/seed.out" >"$WORK/contract.env"
if [[ "$(wc -l <"$WORK/contract.env")" -ne 4 ]]; then
    echo "seeding failed" >&2
    cat "$WORK/seed.log" >&2
    exit 1
fi

HTTP_PORT="$(free_port)"
SERVE_LOG="$WORK/odoo-serve.log"
echo "== odoo: serving on 127.0.0.1:$HTTP_PORT"
"$ODOO_PYTHON" "$ODOO_HOME/odoo-bin" "${ODOO_ARGS[@]}" \
    --http-port="$HTTP_PORT" --gevent-port="$(free_port)" --workers=0 \
    >"$SERVE_LOG" 2>&1 &
ODOO_PID=$!
for _ in $(seq 1 120); do
    if ! kill -0 "$ODOO_PID" 2>/dev/null; then
        echo "odoo exited early" >&2
        tail -50 "$SERVE_LOG" >&2
        exit 1
    fi
    code="$("$PROJECT_PYTHON" - "$HTTP_PORT" <<'EOF'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ows/iot/config", timeout=2)
    print(200)
except urllib.error.HTTPError as exc:
    print(exc.code)
except Exception:
    print(0)
EOF
)"
    [[ "$code" == "401" ]] && break
    sleep 0.5
done
if [[ "$code" != "401" ]]; then
    echo "odoo did not answer GET /ows/iot/config with 401 (got $code)" >&2
    tail -50 "$SERVE_LOG" >&2
    exit 1
fi

# 4. The contract suite, unchanged, against the live Odoo (events and the live-state status).
echo "== contract suite against real Odoo"
set -a
# shellcheck disable=SC1091
. "$WORK/contract.env"
CONTRACT_ODOO_URL="http://127.0.0.1:$HTTP_PORT"
set +a
cd "$REPO"
"$PROJECT_PYTHON" -m pytest tests/contract/test_odoo_contract.py tests/contract/test_status_contract.py \
    -q -p no:cacheprovider
if grep -qE " (ERROR|CRITICAL) " "$SERVE_LOG"; then
    echo "odoo logged errors while serving the contract suite:" >&2
    grep -E " (ERROR|CRITICAL) " -A12 "$SERVE_LOG" | head -100 >&2
    exit 1
fi
echo "== addon tests and contract suite passed"
