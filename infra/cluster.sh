#!/usr/bin/env bash
# A local Kafka cluster on loopback: N KRaft nodes (default 3), each broker and controller, the N
# of them the controller quorum's voters, from the same Maven jars as the single broker. Internal
# topics (consumer offsets, transactions) and, by broker default, every topic have min(N, 3)
# replicas and min.insync.replicas one less (at least 1): with three nodes, replication 3 and
# min.insync 2, so one node may be down and every write still lands on two.
#
#   npm run infra:up -- --brokers 3      (or INFRA_BROKERS=3 npm run infra:up): cluster, registry, database
#   npm run infra:down -- --brokers 3    stops the cluster only; a plain infra:down stops it too
#   bash infra/cluster.sh up|down|status|start-node I|stop-node I|kill-node I
#
# The single broker of infra:up (9092/9093/9094) is not touched: node I listens on 127.0.0.1:
# KAFKA_CLUSTER_PORT+I-1 (default 29092..) for clients and KAFKA_CLUSTER_CONTROLLER_PORT+I-1
# (default 29192..) for the quorum. Data, logs and pid files under KAFKA_CLUSTER_HOME (default
# .infra/cluster/node-I). Heaps: KAFKA_CLUSTER_HEAP each (default 768m; three nodes, the single
# broker and the registry fit a 2-core, 24 GB machine with room for the apps). `up` writes
# client.env there with KAFKA_BROKERS listing every node and the replication settings for the apps.
[ -n "${INFRA_SRC:-}" ] || source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CLUSTER_NODES=${INFRA_BROKERS:-3}
CLUSTER_HOME=${KAFKA_CLUSTER_HOME:-$INFRA_HOME/cluster}
CLUSTER_PORT=${KAFKA_CLUSTER_PORT:-29092}
CLUSTER_CONTROLLER_PORT=${KAFKA_CLUSTER_CONTROLLER_PORT:-29192}
CLUSTER_HEAP=${KAFKA_CLUSTER_HEAP:-768m}

cluster_rf() { if [ "$CLUSTER_NODES" -lt 3 ]; then echo "$CLUSTER_NODES"; else echo 3; fi; }
cluster_min_isr() { local rf; rf=$(cluster_rf); if [ "$rf" -gt 1 ]; then echo $(( rf - 1 )); else echo 1; fi; }
node_port() { echo $(( CLUSTER_PORT + $1 - 1 )); }
node_controller_port() { echo $(( CLUSTER_CONTROLLER_PORT + $1 - 1 )); }
node_home() { echo "$CLUSTER_HOME/node-$1"; }
node_pidfile() { echo "$CLUSTER_HOME/node-$1/kafka.pid"; }
cluster_brokers() {
  local i out=""
  for i in $(seq 1 "$CLUSTER_NODES"); do out="$out${out:+,}127.0.0.1:$(node_port "$i")"; done
  echo "$out"
}

cluster_check_nodes() {
  if ! [[ "$CLUSTER_NODES" =~ ^[1-9]$ ]]; then
    echo "infra: --brokers / INFRA_BROKERS must be a number of nodes from 1 to 9, got \"$CLUSTER_NODES\"" >&2; exit 2
  fi
  # The quorum's voters are fixed when the data directories are formatted.
  if [ -f "$CLUSTER_HOME/nodes" ] && [ "$(cat "$CLUSTER_HOME/nodes")" != "$CLUSTER_NODES" ]; then
    echo "infra: the cluster in $CLUSTER_HOME was made with $(cat "$CLUSTER_HOME/nodes") nodes, not $CLUSTER_NODES; stop it (infra:down -- --brokers $(cat "$CLUSTER_HOME/nodes")) and remove $CLUSTER_HOME to make another" >&2
    exit 2
  fi
}

cluster_node_config() { # node, file
  local i=$1 voters="" j
  for j in $(seq 1 "$CLUSTER_NODES"); do voters="$voters${voters:+,}$j@127.0.0.1:$(node_controller_port "$j")"; done
  local rf isr; rf=$(cluster_rf); isr=$(cluster_min_isr)
  cat >"$2" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(node_port "$i"),CONTROLLER://127.0.0.1:$(node_controller_port "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(node_port "$i")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$(node_home "$i")/data
num.partitions=6
default.replication.factor=$rf
min.insync.replicas=$isr
auto.create.topics.enable=false
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=4
PROPS
}

cluster_java_args() { # node
  CLUSTER_JAVA=(java -Xms256m "-Xmx$CLUSTER_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:ParallelGCThreads=2
    -XX:ConcGCThreads=1 -XX:CICompilerCount=2 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$INFRA_SRC/log4j2.properties" -Dkafka.logs.dir="$(node_home "$1")/logs"
    -cp "$KAFKA_HOME/libs/*")
}

# Starts one node (formatting its data directory on first start) without waiting for it.
cluster_start_node() { # node
  local i=$1 home; home=$(node_home "$1")
  local pidfile; pidfile=$(node_pidfile "$i")
  if alive "$pidfile"; then echo "infra: node $i already running (pid $(cat "$pidfile"))"; return; fi
  if port_open "$(node_port "$i")" || port_open "$(node_controller_port "$i")"; then
    fail "cluster node $i (port $(node_port "$i") or $(node_controller_port "$i") is taken by a process this did not start; set KAFKA_CLUSTER_PORT / KAFKA_CLUSTER_CONTROLLER_PORT)" /dev/null
  fi
  mkdir -p "$home/logs" "$home/data"
  cluster_node_config "$i" "$home/server.properties"
  cluster_java_args "$i"
  if [ ! -f "$home/data/meta.properties" ]; then
    "${CLUSTER_JAVA[@]}" kafka.tools.StorageTool format -t "$(cat "$CLUSTER_HOME/cluster-id")" -c "$home/server.properties" \
      >>"$home/logs/format.log" 2>&1 || fail "cluster node $i storage format" "$home/logs/format.log"
  fi
  nohup setsid "${CLUSTER_JAVA[@]}" kafka.Kafka "$home/server.properties" >"$home/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

cluster_wait_node() { # node, seconds
  wait_for "cluster node $1" "$(node_home "$1")/logs/server.log" "$(node_pidfile "$1")" "$2" \
    node "$INFRA_SRC/wait-kafka.js" "127.0.0.1:$(node_port "$1")"
}

cluster_up() {
  local started; started=$(date +%s%N)
  cluster_check_nodes
  kafka_libs
  mkdir -p "$CLUSTER_HOME"
  echo "$CLUSTER_NODES" >"$CLUSTER_HOME/nodes"
  if [ ! -s "$CLUSTER_HOME/cluster-id" ]; then
    cluster_java_args 1
    "${CLUSTER_JAVA[@]}" kafka.tools.StorageTool random-uuid >"$CLUSTER_HOME/cluster-id" 2>>"$CLUSTER_HOME/format.log" \
      || fail "cluster id (StorageTool random-uuid)" "$CLUSTER_HOME/format.log"
  fi
  local i
  # A node started earlier with another configuration (this script changed) is restarted.
  for i in $(seq 1 "$CLUSTER_NODES"); do
    if alive "$(node_pidfile "$i")"; then
      local next; next=$(mktemp "$(node_home "$i")/server.properties.XXXXXX")
      cluster_node_config "$i" "$next"
      if ! cmp -s "$next" "$(node_home "$i")/server.properties"; then
        echo "infra: cluster node $i was started with an older configuration; restarting it (data is kept)"
        stop_process "cluster node $i" "$(node_pidfile "$i")" infra:up
      fi
      rm -f "$next"
    fi
  done
  # All nodes start at once: a quorum needs a majority of voters before any broker registers.
  for i in $(seq 1 "$CLUSTER_NODES"); do cluster_start_node "$i"; done
  for i in $(seq 1 "$CLUSTER_NODES"); do cluster_wait_node "$i" 120; done
  wait_for "cluster ($CLUSTER_NODES brokers registered)" "$(node_home 1)/logs/server.log" "$(node_pidfile 1)" 60 \
    node "$INFRA_SRC/wait-kafka.js" "127.0.0.1:$(node_port 1)" "$CLUSTER_NODES"
  cat >"$CLUSTER_HOME/client.env" <<ENV
KAFKA_BROKERS=$(cluster_brokers)
TOPIC_REPLICATION_FACTOR=$(cluster_rf)
TOPIC_MIN_INSYNC_REPLICAS=$(cluster_min_isr)
ENV
  echo "infra:up: Kafka cluster of $CLUSTER_NODES KRaft nodes ready in $(( ($(date +%s%N) - started) / 1000000 )) ms: $(cluster_brokers)"
  echo "infra:up:   replication $(cluster_rf), min.insync.replicas $(cluster_min_isr) (internal topics and broker default); heap $CLUSTER_HEAP per node; logs $CLUSTER_HOME/node-*/logs/server.log"
  echo "infra:up:   for chatstats: set -a; . $CLUSTER_HOME/client.env; set +a"
}

cluster_down() {
  local i pids=()
  # All at once: a node that stops alone waits for the others' controlled-shutdown answers.
  for i in $(seq "$CLUSTER_NODES" -1 1); do
    stop_process "cluster node $i" "$(node_pidfile "$i")" infra:down & pids+=($!)
  done
  wait "${pids[@]}"
}

cluster_status() {
  local i
  for i in $(seq 1 "$CLUSTER_NODES"); do
    if alive "$(node_pidfile "$i")"; then echo "node $i: running (pid $(cat "$(node_pidfile "$i")")), 127.0.0.1:$(node_port "$i")"
    else echo "node $i: stopped, 127.0.0.1:$(node_port "$i")"; fi
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    up) cluster_up ;;
    down) [ -f "$CLUSTER_HOME/nodes" ] && CLUSTER_NODES=$(cat "$CLUSTER_HOME/nodes"); cluster_down ;;
    status) cluster_status ;;
    start-node) cluster_check_nodes; cluster_start_node "${2:?node}"; cluster_wait_node "$2" 120 ;;
    stop-node) stop_process "cluster node ${2:?node}" "$(node_pidfile "$2")" infra ;;
    kill-node)
      if alive "$(node_pidfile "${2:?node}")"; then kill -KILL "$(cat "$(node_pidfile "$2")")"; echo "infra: cluster node $2 killed"; fi
      rm -f "$(node_pidfile "$2")" ;;
    *) echo "usage: $0 up|down|status|start-node I|stop-node I|kill-node I" >&2; exit 2 ;;
  esac
fi
