# Sourced by scripts/start and scripts/test: what each needs, installed where it is missing.
# Safe to run again; reinstalls the Python packages only when pyproject.toml changes.
# Usage: . scripts/bootstrap.sh [runtime|demo|dev]
#   runtime  Python >= 3.11 with venv (apt), .venv with the bridge    (./scripts/start)
#   demo     runtime + mosquitto (apt): the demo starts a private broker (./scripts/start demo)
#   dev      Python, .venv with the bridge and its dev tools (pytest, hypothesis, ruff,
#            mypy), mosquitto, mosquitto-clients and nats-server (apt): the tests start their
#            own brokers (./scripts/test)
# apt is used only when run as root; otherwise it names the Debian packages to install.
set -euo pipefail
_profile="${1:-runtime}"
case "$_profile" in
runtime | demo | dev) ;;
*)
    echo "bootstrap: unknown profile '$_profile' (runtime, demo or dev)" >&2
    return 2 2>/dev/null || exit 2
    ;;
esac
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: please install the Debian packages: $*" >&2
        return 1
    fi
    if [ -z "${_APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null && _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

_python=""
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        _python="$candidate"
        break
    fi
done
if [ -z "$_python" ]; then
    _apt_install python3 python3-venv
    _python=python3
fi

if [ ! -x "$_root/.venv/bin/python" ]; then
    if ! "$_python" -m venv "$_root/.venv" >/dev/null 2>&1; then
        rm -rf "$_root/.venv"
        _apt_install python3-venv
        "$_python" -m venv "$_root/.venv"
    fi
fi

_extra=""
_python_profile=runtime
if [ "$_profile" = dev ]; then
    _extra="[dev]"
    _python_profile=dev
fi
_stamp="$_root/.venv/.installed-$_python_profile"
_want="$(sha256sum <"$_root/pyproject.toml" | cut -d' ' -f1)"
_installed() { [ -f "$1" ] && [ "$(cat "$1")" = "$_want" ]; }
# a dev install holds everything a runtime one does
if ! _installed "$_stamp" && ! { [ "$_python_profile" = runtime ] &&
    _installed "$_root/.venv/.installed-dev"; }; then
    echo "bootstrap: installing iot-bridge$_extra into .venv" >&2
    "$_root/.venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$_root/.venv/bin/python" -m pip install -q -e "$_root$_extra"
    echo "$_want" >"$_stamp"
fi

if [ "$_profile" != runtime ] && ! command -v mosquitto >/dev/null 2>&1 &&
    [ ! -x /usr/sbin/mosquitto ]; then
    if [ "$_profile" = dev ]; then
        echo "bootstrap: installing mosquitto (the tests start their own brokers)" >&2
        _apt_install mosquitto mosquitto-clients
    else
        echo "bootstrap: installing mosquitto (the demo starts its own broker)" >&2
        _apt_install mosquitto
    fi
fi
if [ "$_profile" = dev ] && ! command -v nats-server >/dev/null 2>&1 &&
    [ ! -x /usr/sbin/nats-server ]; then
    echo "bootstrap: installing nats-server (the interop tests start NATS nodes)" >&2
    _apt_install nats-server || echo "bootstrap: no nats-server; the NATS interop tests will skip" >&2
fi
if [ "$_profile" = dev ] && ! command -v promtool >/dev/null 2>&1; then
    echo "bootstrap: installing promtool (tests of the Prometheus alert rules)" >&2
    _apt_install prometheus || echo "bootstrap: no promtool; the alert rule tests will skip" >&2
fi
export PATH="$_root/.venv/bin:$PATH:/usr/sbin"
