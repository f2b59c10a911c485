#!/usr/bin/env bash
# Stops what infra/up.sh started (by its pid files) and nothing else. Data stays in .infra.
set -uo pipefail
source "$(dirname "$0")/common.sh"

stop() { # name, pidfile
  if ! alive "$2"; then echo "infra:down: $1 not running"; rm -f "$2"; return; fi
  local pid; pid=$(cat "$2")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "infra:down: $1 (pid $pid) killed after 30s"; else echo "infra:down: $1 (pid $pid) stopped"; fi
  rm -f "$2"
}
stop "schema registry" "$REGISTRY_PID"
stop "Kafka" "$KAFKA_PID"
