#!/usr/bin/env bash
# Stops what infra/up.sh started (by its pid files) and nothing else. Data stays in .infra.
set -uo pipefail
source "$(dirname "$0")/common.sh"

stop_process "schema registry" "$REGISTRY_PID"
stop_process "Kafka" "$KAFKA_PID"
