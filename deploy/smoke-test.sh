#!/usr/bin/env bash
# Container smoke test: the deployment steps of docs/deployment.md as far as Docker allows here
# (no image registry: the compose stack's own images cannot be pulled), then the image itself.
#
#  - a fresh copy of deploy/: `docker-compose config -q` with the example env, `./setup.sh`
#    (secrets, certificate, broker users), `config -q` again with the .env it made;
#  - the deployment's mosquitto.conf with setup.sh's passwd, ACL and certificate (host mosquitto,
#    own ports), the compose health check against it, plain and over TLS;
#  - build the image, run it against that broker (as user iot-bridge) and the test Odoo server
#    (tests/support/fake_odoo.py), drive simulated sessions from a plug user that setup.sh
#    added, SIGKILL the container between sessions and in the middle of one, and check that
#    Odoo got every run_start/run_stop exactly once and that Docker reports it healthy.
#
#   bash deploy/smoke-test.sh          (as root; about 1-3 minutes)
#
# Where no Docker engine can be installed or started (not root, no apt, dockerd refuses to run)
# it prints "SKIPPED: ..." and exits 0. Any failure after that exits non-zero.
#
# Everything runs on 127.0.0.1 (container with --network host). It cleans up what it started:
# the container, its volume, the image it built, the helper processes, its temp directory and,
# if it had to start one, its own dockerd (private socket, killed by PID). When it starts dockerd
# it keeps the daemon's data root (SMOKE_DOCKER_ROOT, default /var/lib/iot-bridge-smoke) so the
# locally made python:3.11-slim stand-in is reused next time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

say() { echo "smoke: $*"; }
skip() {
    echo "SKIPPED: container smoke test: $*"
    SKIPPED=1
    exit 0
}
die() {
    echo "smoke: FAILED: $*" >&2
    exit 1
}

IMAGE=iot-bridge:smoke
NAME=iot-bridge-smoke-$$
VOLUME=iot-bridge-smoke-data-$$
PREFIX=smoke
WORK=$(mktemp -d /tmp/iot-bridge-smoke.XXXXXX)
DOCKERD_PID=""
SKIPPED=""
APT_UPDATED=""
COMPOSE_CHECKED="compose config not checked"
STACK_PID=""
SIM_PID=""
CONTAINER_MADE=""
VOLUME_MADE=""
IMAGE_MADE=""
EXEC_ROOT=/run/iot-bridge-smoke-$$
T0=$(date +%s)

cleanup() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ] && [ -n "$CONTAINER_MADE" ]; then
        echo "---- container log (last 40 lines)" >&2
        docker logs --tail 40 "$NAME" >&2 2>&1
        echo "---- health log" >&2
        docker inspect --format '{{json .State.Health}}' "$NAME" >&2 2>&1
    fi
    [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
    [ -n "$CONTAINER_MADE" ] && docker rm -f "$NAME" >/dev/null 2>&1
    [ -n "$VOLUME_MADE" ] && docker volume rm "$VOLUME" >/dev/null 2>&1
    if [ -n "$IMAGE_MADE" ]; then
        docker rmi "$IMAGE" >/dev/null 2>&1
        docker image prune -f --filter label=iot-bridge.stage=build >/dev/null 2>&1
    fi
    if [ -n "$STACK_PID" ]; then
        kill -TERM "$STACK_PID" 2>/dev/null
        wait "$STACK_PID" 2>/dev/null
    fi
    if [ -n "$DOCKERD_PID" ]; then
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$DOCKERD_PID" 2>/dev/null
        umount "$EXEC_ROOT/netns/default" 2>/dev/null
        rm -rf "$EXEC_ROOT"
    fi
    rm -rf "$WORK"
    if [ "$rc" = 0 ] && [ -z "$SKIPPED" ]; then
        say "cleaned up (took $(($(date +%s) - T0)) s in all)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. a Docker engine ---------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        skip "no running Docker engine and not root, so none can be installed or started"
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
        say "installing docker.io and debootstrap from apt"
        if ! { apt-get update -qq >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                docker.io debootstrap >/dev/null 2>&1; }; then
            skip "docker.io/debootstrap could not be installed from apt"
        fi
        APT_UPDATED=1
    fi
    command -v docker >/dev/null 2>&1 || skip "no docker CLI after installing docker.io"
    # A private daemon: own socket, exec root and pid file, no networking of its own (the
    # container uses --network host), so it cannot disturb any other daemon on the machine.
    DATA_ROOT=${SMOKE_DOCKER_ROOT:-/var/lib/iot-bridge-smoke}
    mkdir -p "$EXEC_ROOT" "$DATA_ROOT"
    export DOCKER_HOST="unix://$EXEC_ROOT/docker.sock"
    say "starting dockerd (socket $DOCKER_HOST, data root $DATA_ROOT)"
    /usr/sbin/dockerd --storage-driver=overlay2 \
        --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false \
        --data-root="$DATA_ROOT" --exec-root="$EXEC_ROOT" --pidfile="$EXEC_ROOT/dockerd.pid" \
        -H "$DOCKER_HOST" >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        tail -5 "$WORK/dockerd.log" | sed 's/^/  dockerd: /'
        skip "dockerd could not be started here"
    fi
else
    say "using the running Docker engine ($(docker version --format '{{.Server.Version}}'))"
fi

# ---- 2. the base image ----------------------------------------------------------------------
if ! docker image inspect python:3.11-slim >/dev/null 2>&1; then
    if docker pull -q python:3.11-slim >/dev/null 2>&1; then
        say "pulled python:3.11-slim"
    else
        say "python:3.11-slim cannot be pulled: making a local stand-in with debootstrap (~45 s)"
        command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing"
        sh deploy/make-python-base.sh "$WORK/pybase" >"$WORK/pybase.log" 2>&1 ||
            { tail -20 "$WORK/pybase.log"; die "making the base image failed"; }
        rm -rf "$WORK/pybase"
    fi
fi

# ---- 3. the repository's virtualenv (simulator, test Odoo, mosquitto) -----------------------
# shellcheck source=/dev/null
. scripts/bootstrap.sh dev
PY="$ROOT/.venv/bin/python"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# ---- 4. the deployment's own steps, on a fresh copy of deploy/ ------------------------------
# (docs/deployment.md, step 2; the compose file's header says the same)
apt_tool() { # apt_tool <command> <package>: make sure <command> exists, from apt as root
    command -v "$1" >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || return 1
    if [ -z "$APT_UPDATED" ]; then apt-get update -qq >/dev/null 2>&1 && APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" \
        >/dev/null 2>&1 && command -v "$1" >/dev/null 2>&1
}
DEPLOY="$WORK/deploy"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard deploy | xargs -0 cp --parents -t "$WORK"
else # not a git checkout: the same files, without what a deployment made
    cp -r deploy "$WORK/"
    rm -rf "$DEPLOY/.env" "$DEPLOY/ca" "$DEPLOY/mosquitto/passwd"
    find "$DEPLOY/mosquitto/certs" -type f ! -name README.md -delete
fi
if apt_tool docker-compose docker-compose; then
    ( cd "$DEPLOY" && docker-compose --env-file .env.example config -q ) ||
        die "docker-compose config -q fails with the example env (deploy/.env.example)"
    ( cd "$DEPLOY" && ! docker-compose config -q 2>"$WORK/compose.err" ) ||
        die "docker-compose config -q passes without deploy/.env"
    grep -q "(run ./setup.sh in deploy/)" "$WORK/compose.err" ||
        die "without deploy/.env, config -q does not say what to do: $(cat "$WORK/compose.err")"
    say "compose: config -q passes with the example env; without .env it says to run ./setup.sh"
fi
( cd "$DEPLOY" && MQTT_PUBLIC_HOST=localhost ./setup.sh ) >"$WORK/setup.log" 2>&1 ||
    { cat "$WORK/setup.log"; die "deploy/setup.sh failed"; }
sed 's/^/  /' "$WORK/setup.log"
if command -v docker-compose >/dev/null 2>&1; then
    ( cd "$DEPLOY" && docker-compose config -q && docker-compose --profile monitoring config -q ) ||
        die "docker-compose config -q fails with the .env that setup.sh made"
    COMPOSE_CHECKED="compose config checked"
    say "compose: config -q (and --profile monitoring) pass with the .env setup.sh made"
else
    say "compose: NOT CHECKED: docker-compose is not installed and cannot be (not root, or apt)"
fi
env_value() { sed -n "s/^$1=//p" "$DEPLOY/.env" | tail -1; }
DEVICE_PASSWORD="$(cd "$DEPLOY" && ./setup.sh device "$PREFIX" | sed -n 's/.*(shown once): //p')"
[ -n "$DEVICE_PASSWORD" ] || die "./setup.sh device $PREFIX printed no password"

# ---- 5. build -------------------------------------------------------------------------------
say "building $IMAGE (legacy builder; --network host for pip)"
t=$(date +%s)
IMAGE_MADE=1
docker build --network host -t "$IMAGE" . >"$WORK/build.log" 2>&1 ||
    { tail -30 "$WORK/build.log"; die "docker build failed"; }
SIZE=$(docker image inspect --format '{{.Size}}' "$IMAGE")
BASE_SIZE=$(docker image inspect --format '{{.Size}}' python:3.11-slim)
say "built in $(($(date +%s) - t)) s: $((SIZE / 1000000)) MB ($(((SIZE - BASE_SIZE) / 1000000)) MB on top of python:3.11-slim)"
[ "$(docker image inspect --format '{{.Config.User}}' "$IMAGE")" = bridge ] || die "image does not run as bridge"
[ "$(docker run --rm --network none --entrypoint id "$IMAGE" -u)" = 1000 ] || die "uid is not 1000"

# ---- 6. the deployment's mosquitto + test Odoo ----------------------------------------------
"$PY" deploy/smoke_stack.py serve --workdir "$WORK/stack" --prefix "$PREFIX" \
    --deploy-dir "$DEPLOY" >"$WORK/stack.log" 2>&1 &
STACK_PID=$!
for _ in $(seq 100); do [ -f "$WORK/stack/stack.json" ] && break; sleep 0.1; done
[ -f "$WORK/stack/stack.json" ] || { cat "$WORK/stack.log"; die "the test stack did not start"; }
stack() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$WORK/stack/stack.json" "$1"; }
MQTT_PORT=$(stack mqtt_port)
MQTT_TLS_PORT=$(stack mqtt_tls_port)
ODOO_URL=$(stack odoo_url)
HEALTH_PORT=$("$PY" -c 'from iot_bridge.tools.broker import free_port; print(free_port())')
say "mosquitto on 127.0.0.1:$MQTT_PORT (TLS $MQTT_TLS_PORT), test Odoo at $ODOO_URL, bridge health on 127.0.0.1:$HEALTH_PORT"
# the compose file's health check of the broker, with the user and password setup.sh made
if apt_tool mosquitto_sub mosquitto-clients; then
    HEALTH_PASSWORD="$(env_value MQTT_HEALTHCHECK_PASSWORD)"
    mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -u healthcheck -P "$HEALTH_PASSWORD" \
        -t '$SYS/broker/uptime' -C 1 -W 5 >/dev/null || die "the broker's health check fails"
    mosquitto_sub -h localhost -p "$MQTT_TLS_PORT" --cafile "$DEPLOY/mosquitto/certs/ca.crt" \
        -u healthcheck -P "$HEALTH_PASSWORD" -t '$SYS/broker/uptime' -C 1 -W 5 >/dev/null ||
        die "the broker's health check over TLS (setup.sh's certificate) fails"
    if mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t '$SYS/broker/uptime' -C 1 -W 3 >/dev/null 2>&1; then
        die "the broker let an anonymous client in"
    fi
    say "broker: health check passes, plain and over TLS; anonymous clients are refused"
else
    say "broker: health check NOT CHECKED: no mosquitto_sub and it cannot be installed"
fi

health() {
    "$PY" - "$HEALTH_PORT" <<'EOF'
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2) as r:
        print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.read().decode())
except OSError:
    print("{}")
EOF
}
wait_connected() {
    for _ in $(seq 120); do
        if health | "$PY" -c 'import json,sys; h=json.load(sys.stdin); sys.exit(0 if h.get("mqtt_connected") and h.get("devices_configured") else 1)'; then
            return 0
        fi
        sleep 0.25
    done
    health
    die "the bridge did not connect to MQTT and load its device within 30 s"
}
wait_healthy() {
    # the image's own HEALTHCHECK (first probe 15 s after start)
    local status=""
    for _ in $(seq 90); do
        status=$(docker inspect --format '{{.State.Health.Status}}' "$NAME")
        [ "$status" = healthy ] && { say "docker reports the container $status"; return 0; }
        [ "$status" = unhealthy ] && break
        sleep 1
    done
    health
    die "container health is '$status', not healthy"
}
simulate() {
    "$PY" tests/tools/shelly_simulator.py --broker 127.0.0.1 --port "$MQTT_PORT" --no-tls \
        --username "$PREFIX" --password "$DEVICE_PASSWORD" \
        --scenario session_end --prefix "$PREFIX" --interval 0.3 --client-id "sim-$1" "${@:2}"
}
odoo_wait() { "$PY" deploy/smoke_stack.py wait --workdir "$WORK/stack" "$@"; }

# ---- 7. run the container as compose would: user iot-bridge, the client id of .env ----------
docker volume create "$VOLUME" >/dev/null
VOLUME_MADE=1
CONTAINER_MADE=1
docker run -d --name "$NAME" --network host \
    -e MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" \
    -e MQTT_USERNAME=iot-bridge -e MQTT_PASSWORD="$(env_value MQTT_BRIDGE_PASSWORD)" \
    -e MQTT_CLIENT_ID="$(env_value MQTT_CLIENT_ID)" \
    -e ODOO_URL="$ODOO_URL" -e ODOO_TOKEN="$(stack odoo_token)" -e ODOO_TIMEOUT=3 \
    -e HEALTH_HOST=127.0.0.1 -e HEALTH_PORT="$HEALTH_PORT" \
    -e DATA_DIR=/data -e MQTT_RECONNECT_MAX=2 \
    -v "$VOLUME:/data" "$IMAGE" >/dev/null
wait_connected
say "container up, connected, device config loaded"

# session 1
simulate 1 >/dev/null
odoo_wait --starts 1 --stops 1 --timeout 30 || die "session 1 did not reach Odoo"
say "session 1: Odoo received run_start and run_stop"
wait_healthy

# kill -9 between sessions, restart, session 2
docker kill -s KILL "$NAME" >/dev/null
[ "$(docker inspect --format '{{.State.Status}}' "$NAME")" = exited ] || die "container still running after kill -9"
say "container killed with SIGKILL (exit code $(docker inspect --format '{{.State.ExitCode}}' "$NAME")); starting it again"
docker start "$NAME" >/dev/null
wait_connected
simulate 2 >/dev/null
odoo_wait --starts 2 --stops 2 --timeout 30 || die "session 2 did not reach Odoo"
say "session 2 after the restart: Odoo received run_start and run_stop"

# kill -9 in the middle of session 3: after Odoo has its run_start, before the machine stops
simulate 3 >"$WORK/sim3.log" 2>&1 &
SIM_PID=$!
odoo_wait --starts 3 --timeout 30 || die "session 3 did not start in Odoo"
docker kill -s KILL "$NAME" >/dev/null
say "session 3 running: container killed with SIGKILL, restarting while the plug keeps publishing"
docker start "$NAME" >/dev/null
wait "$SIM_PID" || die "the simulator failed: $(cat "$WORK/sim3.log")"
SIM_PID=""
wait_connected
odoo_wait --starts 3 --stops 3 --timeout 40 || die "session 3 was not finished in Odoo after the restart"
say "session 3 finished in Odoo after the mid-session kill"
wait_healthy

# ---- 8. verdict -----------------------------------------------------------------------------
sleep 2 # let any late retry land before counting
"$PY" deploy/smoke_stack.py check --workdir "$WORK/stack" --sessions 3 || die "Odoo's events are not exactly once"
health | "$PY" -c '
import json, sys
h = json.load(sys.stdin)
print("smoke: /health status=%(status)s queue_depth=%(queue_depth)s dead_letters=%(dead_letters)s"
      " mqtt_reconnects=%(mqtt_reconnects)s" % h)
sys.exit(0 if h["status"] == "ok" and h["queue_depth"] == 0 and h["dead_letters"] == 0 else 1)
' || die "the bridge still has queued or dead-lettered events"
if docker logs "$NAME" 2>&1 | grep -q Traceback; then
    docker logs "$NAME" 2>&1 | grep -B2 -A10 Traceback | head -40
    die "the container logged a traceback"
fi
say "PASSED: image $((SIZE / 1000000)) MB, 3 sessions, 2 SIGKILLs, every event exactly once; setup.sh's broker files work, $COMPOSE_CHECKED"
