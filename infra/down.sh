#!/usr/bin/env bash
# Stops what infra/up.sh started (by its pid files) and nothing else. Data stays in .infra.
# `--brokers N` (N > 1) or `--cluster`: only the local cluster of `infra:up -- --brokers N`.
set -uo pipefail
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/cluster.sh"

only_cluster=false
case "${1:-}" in
  --cluster|--brokers|--brokers=*) only_cluster=true ;;
  "") ;;
  *) echo "infra:down: unknown argument \"$1\" (usage: infra:down [-- --brokers N])" >&2; exit 2 ;;
esac

if [ -f "$CLUSTER_HOME/nodes" ]; then
  CLUSTER_NODES=$(cat "$CLUSTER_HOME/nodes")
  cluster_down
elif $only_cluster; then
  echo "infra:down: no cluster in $CLUSTER_HOME"
fi
$only_cluster && exit 0
stop_process "schema registry" "$REGISTRY_PID"
stop_process "Kafka" "$KAFKA_PID"
