# Sourced by scripts/start and scripts/test: a virtualenv in .venv with the project installed,
# and (for tests) a mosquitto binary. Safe to run again; reinstalls only when pyproject changes.
# Usage: . scripts/bootstrap.sh [runtime|dev]
set -euo pipefail
_profile="${1:-runtime}"
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
[ "$_profile" = dev ] && _extra="[dev]"
_stamp="$_root/.venv/.installed-$_profile"
_want="$(cat "$_root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_want" ]; then
    echo "bootstrap: installing iot-bridge$_extra into .venv" >&2
    "$_root/.venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$_root/.venv/bin/python" -m pip install -q -e "$_root$_extra"
    echo "$_want" >"$_stamp"
fi

if [ "$_profile" = dev ] && ! command -v mosquitto >/dev/null 2>&1 &&
    [ ! -x /usr/sbin/mosquitto ]; then
    echo "bootstrap: installing mosquitto (the tests start their own broker)" >&2
    _apt_install mosquitto mosquitto-clients
fi
if [ "$_profile" = dev ] && ! command -v promtool >/dev/null 2>&1; then
    echo "bootstrap: installing promtool (tests of the Prometheus alert rules)" >&2
    _apt_install prometheus || echo "bootstrap: no promtool; the alert rule tests will skip" >&2
fi
export PATH="$_root/.venv/bin:$PATH:/usr/sbin"
