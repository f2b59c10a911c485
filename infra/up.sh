#!/usr/bin/env bash
# Starts the local infrastructure on loopback, each part only if it is not already running:
#   - Apache Kafka (KRaft, one node that is broker and controller) on 127.0.0.1:9092 (PLAINTEXT)
#     and 127.0.0.1:9094 (SASL_SSL: TLS with a local CA, SCRAM-SHA-256/512 or PLAIN as user
#     chatstats; CA, password and client settings in .infra/kafka/tls, see infra/security.sh),
#     from jars Maven resolves from Maven Central (cached in ~/.m2, copied to .infra/kafka/libs);
#   - Apicurio Registry (Confluent-compatible API under /apis/ccompat/v7) on 127.0.0.1:8081
#     (health and metrics on 127.0.0.1:9000);
#   - the PostgreSQL database named by DATABASE_URL (created if missing; the server is not ours).
# Waits until each part answers, prints how long start-up took, and on failure names the part and
# its log file. infra/down.sh stops what this started and nothing else. A broker this started
# earlier with another configuration (e.g. without the SASL_SSL listener) is restarted.
#
# `--brokers N` (or INFRA_BROKERS=N) with N > 1 starts, instead of the single broker, a cluster of
# N KRaft nodes on other ports (127.0.0.1:29092.., replication 3, min.insync 2; see
# infra/cluster.sh), with the registry and the database as above. Either way a
# TOPIC_REPLICATION_FACTOR or TOPIC_MIN_INSYNC_REPLICAS in the environment larger than the brokers
# started is refused before anything starts.
set -euo pipefail
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/security.sh"

while [ $# -gt 0 ]; do
  case "$1" in
    --brokers) INFRA_BROKERS=${2:-}; shift 2 || { echo "infra:up: --brokers needs a number" >&2; exit 2; } ;;
    --brokers=*) INFRA_BROKERS=${1#--brokers=}; shift ;;
    *) echo "infra:up: unknown argument \"$1\" (usage: infra:up [-- --brokers N])" >&2; exit 2 ;;
  esac
done
INFRA_BROKERS=${INFRA_BROKERS:-1}
source "$(dirname "$0")/cluster.sh"
if [ "$INFRA_BROKERS" != 1 ]; then cluster_check_nodes; fi
for var in TOPIC_REPLICATION_FACTOR TOPIC_MIN_INSYNC_REPLICAS; do
  v=${!var:-}
  if [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -gt "$INFRA_BROKERS" ]; then
    why="topics cannot have more replicas than brokers"
    [ "$var" = TOPIC_MIN_INSYNC_REPLICAS ] && why="no write could reach $v in-sync replicas"
    echo "infra:up: $var is $v, but infra:up starts $INFRA_BROKERS broker$([ "$INFRA_BROKERS" -eq 1 ] || echo s): $why; run infra:up -- --brokers $v (a local cluster), or lower $var" >&2
    exit 2
  fi
done

# The readiness checks are node scripts on kafkajs and pg: without the project's packages they
# could never succeed, and the wait would end in a misleading "not ready" after its time limit.
[ -d "$(dirname "$0")/../node_modules/kafkajs" ] || { echo "infra:up: the npm packages are not installed; run npm ci first" >&2; exit 2; }

started=$(date +%s%N)
mkdir -p "$INFRA_HOME"

# --- Kafka -----------------------------------------------------------------------------------
kafka_config() { # file to write
  mkdir -p "$KAFKA_HOME/logs" "$KAFKA_HOME/data"
  (umask 077; cat >"$1" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_HOME/data
num.partitions=6
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.segment.bytes=67108864
PROPS
  sasl_ssl_properties >>"$1")
}

kafka_java_args() {
  KAFKA_JAVA=(java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$INFRA_SRC/log4j2.properties" -Dkafka.logs.dir="$KAFKA_HOME/logs"
    -cp "$KAFKA_HOME/libs/*")
}
kafka_java() { kafka_java_args; "${KAFKA_JAVA[@]}" "$@"; }

start_kafka() {
  if alive "$KAFKA_PID"; then
    # server.properties is what the running broker read at start: if it would be written
    # differently now (e.g. this script gained the SASL_SSL listener), restart the broker.
    ensure_tls
    local why="" next; next=$(mktemp "$KAFKA_HOME/server.properties.XXXXXX")
    kafka_config "$next"
    if ! port_open "$KAFKA_SASL_SSL_PORT"; then why="it has no SASL_SSL listener on 127.0.0.1:$KAFKA_SASL_SSL_PORT"
    elif ! cmp -s "$next" "$KAFKA_HOME/server.properties"; then why="infra/up.sh now writes a different server.properties"
    fi
    rm -f "$next"
    if [ -z "$why" ]; then
      echo "infra:up: Kafka already running (pid $(cat "$KAFKA_PID"))"
      ensure_sasl_user
      return
    fi
    echo "infra:up: Kafka (pid $(cat "$KAFKA_PID")) was started by infra:up with an older configuration: $why; restarting it (data is kept)"
    stop_process Kafka "$KAFKA_PID" infra:up
  fi
  if port_open "$KAFKA_PORT"; then
    echo "infra:up: port $KAFKA_PORT is taken by a process infra:up did not start; using it as the broker"
    if ! port_open "$KAFKA_SASL_SSL_PORT"; then
      echo "infra:up: warning: nothing listens on 127.0.0.1:$KAFKA_SASL_SSL_PORT, so the SASL_SSL test will fail; stop that broker and run infra:up to get one with that listener" >&2
    fi
    return
  fi
  kafka_libs
  ensure_tls
  kafka_config "$KAFKA_HOME/server.properties"
  if [ ! -f "$KAFKA_HOME/data/meta.properties" ]; then
    local cluster; cluster=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_HOME/logs/format.log")
    scram_format_args
    kafka_java kafka.tools.StorageTool format -t "$cluster" -c "$KAFKA_HOME/server.properties" --standalone \
      "${SCRAM_FORMAT_ARGS[@]}" >>"$KAFKA_HOME/logs/format.log" 2>&1 || fail "Kafka storage format" "$KAFKA_HOME/logs/format.log"
  fi
  kafka_java_args
  nohup setsid "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_HOME/server.properties" \
    >"$KAFKA_HOME/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_PID"
  wait_for "Kafka" "$KAFKA_HOME/logs/server.log" "$KAFKA_PID" 90 node "$INFRA_SRC/wait-kafka.js" "127.0.0.1:$KAFKA_PORT"
  ensure_sasl_user
  echo "infra:up: Kafka ready on 127.0.0.1:$KAFKA_PORT, SASL_SSL on 127.0.0.1:$KAFKA_SASL_SSL_PORT (pid $(cat "$KAFKA_PID"), log $KAFKA_HOME/logs/server.log)"
}

# --- Schema registry -------------------------------------------------------------------------
# Apicurio Registry 3.x is built for Java 21; the broker is content with the default Java 17.
registry_java() {
  local j v
  for j in ${JAVA21_HOME:+$JAVA21_HOME/bin/java} /usr/lib/jvm/*/bin/java "$(command -v java)"; do
    [ -x "$j" ] || continue
    v=$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/.*java.specification.version = //p')
    if [ "${v%%.*}" -ge 21 ] 2>/dev/null; then echo "$j"; return 0; fi
  done
  return 1
}

start_registry() {
  if alive "$REGISTRY_PID"; then echo "infra:up: schema registry already running (pid $(cat "$REGISTRY_PID"))"; return; fi
  if port_open "$REGISTRY_PORT"; then
    echo "infra:up: port $REGISTRY_PORT is taken by a process infra:up did not start; using it as the registry"
    return
  fi
  if [ ! -f "$REGISTRY_HOME/app/quarkus-run.jar" ]; then
    echo "infra:up: resolving Apicurio Registry $APICURIO_VERSION with Maven (first run only)"
    mkdir -p "$REGISTRY_HOME/app"
    mvn -q -B -f "$INFRA_SRC/kafka/pom.xml" dependency:copy \
      -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
      -DoutputDirectory="$REGISTRY_HOME" >"$REGISTRY_HOME/maven.log" 2>&1 \
      || fail "Apicurio Registry download (mvn)" "$REGISTRY_HOME/maven.log"
    tar xzf "$REGISTRY_HOME/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz" -C "$REGISTRY_HOME/app"
    rm -f "$REGISTRY_HOME/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz"
  fi
  local java; java=$(registry_java) || fail "schema registry (Apicurio $APICURIO_VERSION needs Java 21+; none found in JAVA21_HOME, /usr/lib/jvm or PATH)" "$REGISTRY_HOME/registry.log"
  # The pid file gets the JVM's pid (nohup and setsid exec it), not a wrapper shell's.
  (cd "$REGISTRY_HOME/app" || exit 1
   nohup setsid "$java" -Xms128m -Xmx512m \
      -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
      -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$REGISTRY_MANAGEMENT_PORT" \
      -jar quarkus-run.jar >"$REGISTRY_HOME/registry.log" 2>&1 </dev/null &
   echo $! >"$REGISTRY_PID")
  wait_for "schema registry" "$REGISTRY_HOME/registry.log" "$REGISTRY_PID" 90 \
    curl -sf "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects"
  echo "infra:up: schema registry ready on http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7 (pid $(cat "$REGISTRY_PID"), log $REGISTRY_HOME/registry.log)"
}

# --- PostgreSQL ------------------------------------------------------------------------------
ensure_database() {
  node "$INFRA_SRC/ensure-db.js" "$DATABASE_URL" >"$INFRA_HOME/postgres.log" 2>&1 \
    || fail "PostgreSQL at $(echo "$DATABASE_URL" | sed -E 's#//[^@]*@#//#')" "$INFRA_HOME/postgres.log"
  cat "$INFRA_HOME/postgres.log"
}

# Kafka and the registry start side by side: both are JVMs that spend their time warming up.
start_registry_bg() { start_registry >"$INFRA_HOME/registry-up.out" 2>&1; }
start_registry_bg & reg=$!
if [ "$INFRA_BROKERS" -gt 1 ]; then cluster_up; else start_kafka; fi
ensure_database
if wait $reg; then cat "$INFRA_HOME/registry-up.out"; else cat "$INFRA_HOME/registry-up.out" >&2; exit 1; fi
echo "infra:up: ready in $(( ($(date +%s%N) - started) / 1000000 )) ms"
