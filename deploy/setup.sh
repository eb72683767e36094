#!/usr/bin/env bash
# Makes what deploy/docker-compose.yaml needs before its first `up` and that git does not hold:
#
#   deploy/.env                      from deploy/.env.example, every "change-me" replaced by a
#                                    random secret (IOT_BRIDGE_TOKEN stays a placeholder: Odoo
#                                    makes it, docs/deployment.md step 3)
#   deploy/mosquitto/certs/          ca.crt, server.crt, server.key: a private CA and the
#                                    broker's certificate for MQTT_PUBLIC_HOST (the CA key goes to
#                                    deploy/ca/, never mounted: move it offline)
#   deploy/mosquitto/passwd          the users iot-bridge and healthcheck, with the passwords of
#                                    deploy/.env
#
#   cd deploy && ./setup.sh                  (MQTT_PUBLIC_HOST=mqtt.example.org ./setup.sh)
#   ./setup.sh device NAME                   adds the plug user NAME, prints its new password
#
# Run it before the first `docker-compose up`: Docker turns a missing bind-mount source into an
# empty root-owned directory, and the broker then fails on it. It keeps every file that exists
# (run it again at any time); delete a file to have it made anew. Needs openssl and
# mosquitto_passwd (Debian: apt-get install openssl mosquitto); without mosquitto_passwd it runs
# the one in the compose file's Mosquitto image.
set -euo pipefail
cd "$(dirname "$0")"

say() { echo "setup: $*"; }
die() {
    echo "setup: $*" >&2
    exit 2
}
command -v openssl >/dev/null 2>&1 || die "openssl is missing (Debian: apt-get install openssl)"

# Files readable by the broker in its container (uid/gid 1883) and by nobody else: as root
# chgrp 1883 + 0640; otherwise the container cannot read a private file of ours, so 0644.
share_with_broker() {
    if [ "$(id -u)" = 0 ]; then
        chgrp 1883 "$@" && chmod 0640 "$@"
    else
        chmod 0644 "$@"
        say "not root: $* made world-readable so the broker container can read it (chgrp 1883 + chmod 0640 as root is tighter)"
    fi
}

secret() { openssl rand -hex 24; }

env_value() { # env_value NAME: its value in .env
    sed -n "s/^$1=//p" .env | tail -1
}

mosquitto_image() {
    local version
    version="$(env_value MOSQUITTO_VERSION)"
    echo "eclipse-mosquitto:${version:-2.0.18}"
}

# mosquitto_passwd with the file in mosquitto/ (from the host, or from the broker image)
passwd_tool() {
    if command -v mosquitto_passwd >/dev/null 2>&1; then
        (cd mosquitto && mosquitto_passwd "$@")
    elif command -v docker >/dev/null 2>&1; then
        docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/mosquitto:/m" -w /m \
            "$(mosquitto_image)" mosquitto_passwd "$@"
    else
        die "mosquitto_passwd is missing (Debian: apt-get install mosquitto) and there is no docker"
    fi
}

add_user() { # add_user NAME PASSWORD
    if [ -f mosquitto/passwd ]; then
        passwd_tool -b passwd "$1" "$2"
    else
        passwd_tool -c -b passwd "$1" "$2"
    fi
}

make_env() {
    if [ -f .env ]; then
        say ".env exists, kept"
        return
    fi
    local tmp
    tmp="$(mktemp .env.XXXXXX)"
    while IFS= read -r line; do
        case "$line" in
        IOT_BRIDGE_TOKEN=*) echo "IOT_BRIDGE_TOKEN=from-odoo-see-docs-deployment-md" ;;
        *=change-me) echo "${line%%=*}=$(secret)" ;;
        *) echo "$line" ;;
        esac
    done <.env.example >"$tmp"
    chmod 0600 "$tmp"
    mv "$tmp" .env
    say ".env made from .env.example with new secrets (IOT_BRIDGE_TOKEN comes from Odoo later)"
}

make_certs() {
    local dir=mosquitto/certs host="${MQTT_PUBLIC_HOST:-$(hostname -f 2>/dev/null || hostname)}"
    if [ -f "$dir/ca.crt" ] && [ -f "$dir/server.crt" ] && [ -f "$dir/server.key" ]; then
        say "$dir: ca.crt, server.crt, server.key exist, kept"
        return
    fi
    [ -d "$dir" ] || die "$dir is not a directory (a failed 'up' before setup? remove it as root)"
    mkdir -p ca
    chmod 0700 ca
    if [ ! -f ca/ca.key ] || [ ! -f "$dir/ca.crt" ]; then
        openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=Workshop MQTT CA" \
            -keyout ca/ca.key -out "$dir/ca.crt" 2>/dev/null
    fi
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" \
        -keyout "$dir/server.key" -out ca/server.csr 2>/dev/null
    printf 'subjectAltName=DNS:%s,DNS:mosquitto,DNS:localhost,IP:127.0.0.1\n' "$host" >ca/san.ext
    openssl x509 -req -in ca/server.csr -CA "$dir/ca.crt" -CAkey ca/ca.key -CAserial ca/ca.srl -CAcreateserial \
        -days 825 -extfile ca/san.ext -out "$dir/server.crt" 2>/dev/null
    rm -f ca/server.csr ca/san.ext
    chmod 0644 "$dir/ca.crt" "$dir/server.crt"
    share_with_broker "$dir/server.key"
    say "$dir: a private CA and a certificate for $host (and mosquitto, localhost, 127.0.0.1);"
    say "  the CA key is deploy/ca/ca.key: keep it offline, it signs certificates devices trust"
}

make_passwd() {
    if [ -f mosquitto/passwd ]; then
        say "mosquitto/passwd exists, kept"
        return
    fi
    [ ! -e mosquitto/passwd ] || die "mosquitto/passwd is not a file (a failed 'up' before setup? remove it as root)"
    local bridge health
    bridge="$(env_value MQTT_BRIDGE_PASSWORD)"
    health="$(env_value MQTT_HEALTHCHECK_PASSWORD)"
    [ -n "$bridge" ] && [ -n "$health" ] || die ".env lacks MQTT_BRIDGE_PASSWORD or MQTT_HEALTHCHECK_PASSWORD"
    add_user iot-bridge "$bridge"
    add_user healthcheck "$health"
    share_with_broker mosquitto/passwd
    say "mosquitto/passwd: users iot-bridge and healthcheck (passwords from .env)"
}

if [ "${1:-}" = device ]; then
    [ -n "${2:-}" ] || die "usage: ./setup.sh device NAME (NAME = the plug's MQTT topic prefix)"
    [ -f mosquitto/passwd ] || die "run ./setup.sh first"
    password="$(openssl rand -hex 16)"
    add_user "$2" "$password"
    say "user $2 added; its password (shown once): $password"
    say "reload the broker: docker-compose kill -s HUP mosquitto"
    exit 0
fi
[ $# = 0 ] || die "usage: ./setup.sh | ./setup.sh device NAME"
make_env
make_certs
make_passwd
say "done; next: docker-compose config -q, then docs/deployment.md step 3 (Odoo)"
