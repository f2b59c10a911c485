# Shared by infra/up.sh and infra/down.sh: where things live and how to tell they run.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INFRA_SRC="$ROOT/infra"
INFRA_HOME=${INFRA_HOME:-$ROOT/.infra}
KAFKA_HOME="$INFRA_HOME/kafka"
REGISTRY_HOME="$INFRA_HOME/registry"
KAFKA_PID="$KAFKA_HOME/kafka.pid"
REGISTRY_PID="$REGISTRY_HOME/registry.pid"
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
# The same broker also listens with SASL_SSL (TLS + SCRAM-SHA-256/512 or PLAIN) on this port; the
# CA, the broker's keystore and the SASL user's password live in KAFKA_TLS_DIR (infra/security.sh).
KAFKA_SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-9094}
KAFKA_TLS_DIR="$KAFKA_HOME/tls"
KAFKA_SASL_USER=chatstats
REGISTRY_PORT=${REGISTRY_PORT:-8081}
REGISTRY_MANAGEMENT_PORT=${REGISTRY_MANAGEMENT_PORT:-9000} # Quarkus management interface (health, metrics)
APICURIO_VERSION=3.3.3
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chatstats}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Stops the process of a pid file (TERM, then KILL after 30s) and removes the file. Its child
# processes too: infra/up.sh before the SASL_SSL listener recorded the registry's wrapper shell,
# whose JVM child (in its own session) outlived it.
stop_process() { # name, pidfile, prefix for messages
  local prefix=${3:-infra:down}
  if ! alive "$2"; then echo "$prefix: $1 not running"; rm -f "$2"; return; fi
  local pid p left; pid=$(cat "$2")
  local pids; pids="$( (ps -o pid= --ppid "$pid" 2>/dev/null || true) | tr -s ' \n' ' ')$pid"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 60); do
    left=""
    for p in $pids; do if kill -0 "$p" 2>/dev/null; then left="$left $p"; fi; done
    if [ -z "$left" ]; then break; fi
    sleep 0.5
  done
  if [ -n "$left" ]; then
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    echo "$prefix: $1 (pid $pid) killed after 30s"
  else
    echo "$prefix: $1 (pid $pid) stopped"
  fi
  rm -f "$2"
}

fail() { # part, log
  echo "infra:up: $1 failed to start; see $2" >&2
  [ -f "$2" ] && tail -n 20 "$2" | sed 's/^/    /' >&2
  exit 1
}

wait_for() { # part, log, pidfile, seconds, command...
  local part=$1 log=$2 pidfile=$3 limit=$4; shift 4
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$pidfile"; then fail "$part (process exited)" "$log"; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then fail "$part (not ready after ${limit}s)" "$log"; fi
    sleep 0.5
  done
}

# The Kafka jars, resolved by Maven from Maven Central (cached in ~/.m2) into $KAFKA_HOME/libs;
# the single broker and the cluster's nodes run from the same jars.
kafka_libs() {
  local stamp="$KAFKA_HOME/libs/.pom.sha"
  local want; want=$(sha1sum "$INFRA_SRC/kafka/pom.xml" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  echo "infra:up: resolving Kafka jars with Maven (first run only)"
  mkdir -p "$KAFKA_HOME"
  rm -rf "$KAFKA_HOME/libs"; mkdir -p "$KAFKA_HOME/libs"
  mvn -q -B -f "$INFRA_SRC/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs" >"$KAFKA_HOME/maven.log" 2>&1 \
    || fail "Kafka jar download (mvn)" "$KAFKA_HOME/maven.log"
  echo "$want" >"$stamp"
}
