#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker + controller in one JVM) on 127.0.0.1.
#
#   deploy/local/kafka.sh start    resolve the broker's jars with Maven (cached), format storage,
#                                  start the broker, wait until it answers, print the address
#   deploy/local/kafka.sh stop     stop it and delete its data
#   deploy/local/kafka.sh halt     stop the broker but keep its data (for fault tests)
#   deploy/local/kafka.sh resume   start it again on the same data
#   deploy/local/kafka.sh freeze   pause the broker's process (connections open, no answers)
#   deploy/local/kafka.sh thaw     let it run again
#   deploy/local/kafka.sh url      print the bootstrap address
#
# Needs Java 17+ and Maven. Settings: GRIDFLOW_KAFKA_PORT (19092), GRIDFLOW_KAFKA_DIR
# (/tmp/gridflow-kafka), GRIDFLOW_CACHE (~/.cache/gridflow; the jars are kept there).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
PORT="${GRIDFLOW_KAFKA_PORT:-19092}"
CPORT="$((PORT + 1))"
DIR="${GRIDFLOW_KAFKA_DIR:-/tmp/gridflow-kafka}"
CACHE="${GRIDFLOW_CACHE:-$HOME/.cache/gridflow}"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"
LIB="$CACHE/kafka-$VERSION/lib"
ADDR="127.0.0.1:$PORT"

resolve_jars() {
  if [ -f "$LIB/.complete" ]; then return; fi
  command -v mvn >/dev/null || { echo "kafka.sh: Maven (mvn) is required" >&2; exit 1; }
  command -v java >/dev/null || { echo "kafka.sh: Java 17+ is required" >&2; exit 1; }
  echo "kafka.sh: resolving Apache Kafka $VERSION with Maven (once; cached in $LIB)" >&2
  rm -rf "$LIB"
  mkdir -p "$LIB"
  (cd "$here/kafka" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$LIB") >&2
  touch "$LIB/.complete"
}

java_run() {
  java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    -Dgridflow.kafka.log="$DIR/broker.log" -cp "$LIB/*" "$@"
}

write_config() {
  mkdir -p "$DIR/data"
  cat >"$DIR/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${CPORT}
listeners=PLAINTEXT://127.0.0.1:${PORT},CONTROLLER://127.0.0.1:${CPORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${PORT}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=${DIR}/data
num.partitions=6
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=24
CONF
}

launch() {
  # A fresh log each time: readiness is read from it.
  [ -f "$DIR/broker.log" ] && mv "$DIR/broker.log" "$DIR/broker.log.1"
  setsid nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    -Dgridflow.kafka.log="$DIR/broker.log" -cp "$LIB/*" kafka.Kafka "$DIR/server.properties" \
    >"$DIR/stdout.log" 2>&1 &
  echo $! >"$DIR/pid"
  for _ in $(seq 1 120); do
    if ! kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then
      echo "kafka.sh: the broker exited; its output:" >&2
      tail -50 "$DIR/stdout.log" "$DIR/broker.log" >&2 2>/dev/null || true
      exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null \
        && grep -q "Kafka Server started\|KafkaRaftServer.*started" "$DIR/broker.log" 2>/dev/null; then
      echo "$ADDR"
      return
    fi
    sleep 1
  done
  echo "kafka.sh: the broker did not start in 120 s" >&2
  tail -50 "$DIR/broker.log" >&2 2>/dev/null || true
  exit 1
}

halt() {
  if [ -f "$DIR/pid" ]; then
    local pid; pid="$(cat "$DIR/pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$DIR/pid"
  fi
}

case "${1:-}" in
  start)
    resolve_jars
    if [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then echo "$ADDR"; exit 0; fi
    rm -rf "$DIR"
    write_config
    java_run kafka.tools.StorageTool format --ignore-formatted \
      -t "$(java_run kafka.tools.StorageTool random-uuid)" -c "$DIR/server.properties" >/dev/null
    launch
    ;;
  resume) resolve_jars; launch ;;
  halt) halt ;;
  freeze) kill -STOP "$(cat "$DIR/pid")" ;;
  thaw) kill -CONT "$(cat "$DIR/pid")" ;;
  stop) halt; rm -rf "$DIR" ;;
  url) echo "$ADDR" ;;
  *) echo "usage: $0 start|stop|halt|resume|freeze|thaw|url" >&2; exit 2 ;;
esac
