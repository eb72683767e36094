# Sourced by scripts/test and .ci/run: run each suite, remember how it ended, and end with one
# line per suite, so that a suite that could not run here is never mistaken for one that passed.
#
#   suite <name> <describe-function> <command...>
#       runs the command (its output shown as it comes), then records one line for <name>:
#       "passed: ...", "FAILED: ..." or "skipped: <reason>" (a suite skips by printing a line
#       "SKIPPED: <what>: <reason>" and exiting 0). <describe-function> gets the output's log
#       file and prints the figures worth keeping ("609 passed in 280 s"). Returns 1 if failed.
#   suite_run <name> <command...> and suite_record <name> <status> <detail>
#       the two halves of suite, for a command that is more than one suite (the Odoo runner).
#   print_summary
#       prints the recorded lines under "== summary"; returns 1 if a suite failed (or, with
#       REQUIRE_ALL_SUITES=1, if one was skipped).
#
# SUMMARY_FILE collects the lines. A caller that sets it (.ci/run) prints the summary itself,
# after its own suites, so that in CI the summary is the last thing in the log.
_suites_log_dir="$(mktemp -d "${TMPDIR:-/tmp}/iot-bridge-suites.XXXXXX")"
if [ -z "${SUMMARY_FILE:-}" ]; then
    SUMMARY_FILE="$_suites_log_dir/summary"
    _suites_own_summary=1
else
    _suites_own_summary=""
fi
: >>"$SUMMARY_FILE"

_suites_slug() { printf '%s' "$1" | tr -c 'A-Za-z0-9' '_'; }

suite_record() { # suite_record <name> <passed|FAILED|skipped> <detail>
    printf '%-30s %s%s\n' "$1" "$2" "${3:+: $3}" >>"$SUMMARY_FILE"
}

suite_run() { # suite_run <name> <command...>: sets SUITE_LOG, SUITE_RC, SUITE_SKIPPED
    local name="$1"
    shift
    SUITE_LOG="$_suites_log_dir/$(_suites_slug "$name").log"
    echo "== $name"
    SUITE_RC=0
    "$@" 2>&1 | tee "$SUITE_LOG" || SUITE_RC=${PIPESTATUS[0]}
    SUITE_SKIPPED=""
    if [ "$SUITE_RC" = 0 ]; then
        SUITE_SKIPPED="$(grep -m1 '^SKIPPED: ' "$SUITE_LOG" | sed -E 's/^SKIPPED: ([^:]*: )?//' || true)"
    fi
}

suite() {
    local name="$1" describe="$2"
    shift 2
    suite_run "$name" "$@"
    if [ -n "$SUITE_SKIPPED" ]; then
        suite_record "$name" skipped "$SUITE_SKIPPED"
    elif [ "$SUITE_RC" = 0 ]; then
        suite_record "$name" passed "$("$describe" "$SUITE_LOG")"
    else
        local detail
        detail="$("$describe" "$SUITE_LOG")"
        suite_record "$name" FAILED "exit $SUITE_RC${detail:+; $detail}"
        return 1
    fi
}

print_summary() {
    echo "== summary"
    cat "$SUMMARY_FILE"
    if grep -qE '^.{30} FAILED' "$SUMMARY_FILE"; then
        return 1
    fi
    if [ "${REQUIRE_ALL_SUITES:-}" = 1 ] && grep -qE '^.{30} skipped' "$SUMMARY_FILE"; then
        echo "REQUIRE_ALL_SUITES=1: a suite was skipped"
        return 1
    fi
}

suites_cleanup() { rm -rf "$_suites_log_dir"; }

# -- what to keep of each suite's output ------------------------------------------------------

last_line_matching() { grep -E "$2" "$1" | tail -1 || true; }

describe_ruff() {
    local check format
    check="$(last_line_matching "$1" '^(All checks passed|Found [0-9]+ error)' |
        sed -E 's/^All checks passed!/check clean/; s/^Found ([0-9]+) errors?.*/check: \1 findings/')"
    format="$(last_line_matching "$1" 'files? (already formatted|would be reformatted)' |
        sed -E 's/already formatted/formatted/')"
    echo "${check:-check did not finish}${format:+, $format}"
}
describe_mypy() {
    last_line_matching "$1" '^(Success|Found [0-9]+ error)' |
        sed -E 's/^Success: no issues found/no issues/'
}
describe_pytest() {
    last_line_matching "$1" '[0-9]+ (passed|failed|errors?|deselected)|no tests ran' |
        sed -E 's/^=+ //; s/ =+$//'
}
# The runner's last line is "odoo addon tests (<addons>): N passed, N skipped, 0 failed"; only
# printed when every addon test passed, so an empty answer means they did not.
describe_odoo_addons() {
    last_line_matching "$1" '^odoo addon tests( \([^)]*\))?: ' |
        sed -E 's/^odoo addon tests( \([^)]*\))?: //'
}
