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
REGISTRY_PORT=${REGISTRY_PORT:-8081}
APICURIO_VERSION=3.3.3
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chatstats}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
