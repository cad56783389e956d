#!/usr/bin/env bash
# A local Levee cluster on 127.0.0.1: N controllers (default 3) and M agents
# (default 2), with their own CA and certificates, in one directory.
#
#   deploy/local-cluster.sh up   [--nodes N] [--agents M] [--dir DIR]
#   deploy/local-cluster.sh down [--dir DIR]
#
# Binaries come from LEVEE_BIN_DIR (default: target/debug of this checkout;
# run `cargo build --workspace` first). Ports are picked by the kernel;
# each node writes the address it bound to DIR/node-N/api.addr.
# Afterwards: export LEVEE_CLI_CONFIG=DIR/cli.toml and use `levee`.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=${LEVEE_BIN_DIR:-$here/target/debug}
command=${1:-}
shift || true
nodes=3
agents=2
dir=$here/.levee-cluster
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --agents) agents=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown option: $1" >&2; exit 64 ;;
  esac
done
levee=$bin_dir/levee
agent_bin=$bin_dir/levee-agent

die() { echo "local-cluster: $*" >&2; exit 1; }

# Waits up to 60 s for a command to succeed.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 600); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "timed out waiting for $what"
}

start_node() {
  local id=$1 join=$2 bootstrap=$3
  local data=$dir/node-$id allowed
  allowed=$(for n in $(seq 1 "$nodes"); do printf '"node-%s", ' "$n"; done)
  mkdir -p "$data"
  rm -f "$data/api.addr"
  cat > "$dir/node-$id.toml" <<TOML
node_id = $id
listen = "127.0.0.1:0"
data_dir = "$data"
join = [$join]

[tls]
ca = "$dir/pki/ca.crt"
cert = "$dir/pki/node-$id.crt"
key = "$dir/pki/node-$id.key"

[raft]
bootstrap = $bootstrap
# The other nodes add themselves (their `join`): allow their names.
join_allowed = [${allowed%, }]
TOML
  "$levee" server --config "$dir/node-$id.toml" >>"$dir/node-$id.log" 2>&1 &
  echo $! > "$dir/node-$id.pid"
  wait_for "node $id to bind" test -s "$data/api.addr"
}

has_voters() {
  local count
  count=$("$levee" cluster status --output json --cli-config "$dir/cli.toml" | grep -c '"voter": true')
  [ "$count" -eq "$1" ]
}

up() {
  [ -x "$levee" ] && [ -x "$agent_bin" ] || die "build first: cargo build --workspace (looked in $bin_dir)"
  [ -e "$dir/node-1.pid" ] && die "$dir already holds a cluster; run '$0 down --dir $dir' first"
  mkdir -p "$dir"
  if [ ! -e "$dir/pki/ca.key" ]; then
    "$levee" ca init --dir "$dir/pki" >/dev/null
    for id in $(seq 1 "$nodes"); do
      "$levee" ca issue --dir "$dir/pki" --role controller --name "node-$id" --ip 127.0.0.1 >/dev/null
    done
    "$levee" ca issue --dir "$dir/pki" --role operator --name local-operator >/dev/null
  fi
  start_node 1 "" true
  local first
  first=$(cat "$dir/node-1/api.addr")
  cat > "$dir/cli.toml" <<TOML
endpoint = "$first"

[tls]
ca = "$dir/pki/ca.crt"
cert = "$dir/pki/local-operator.crt"
key = "$dir/pki/local-operator.key"
TOML
  for id in $(seq 2 "$nodes"); do
    start_node "$id" "\"$first\"" false
  done
  wait_for "$nodes voters" has_voters "$nodes"
  local controllers=""
  for id in $(seq 1 "$nodes"); do
    controllers+="\"$(cat "$dir/node-$id/api.addr")\", "
  done
  for n in $(seq 1 "$agents"); do
    [ -e "$dir/pki/agent-$n.crt" ] || "$levee" ca issue --dir "$dir/pki" --role agent --name "agent-$n" >/dev/null
    # Labels are the cluster's to give: set them as an operator before the
    # agent first connects (an agent's own config only reports facts).
    LEVEE_CLI_CONFIG="$dir/cli.toml" "$levee" agents label "agent-$n" role=demo "site=site-$n" >/dev/null
    cat > "$dir/agent-$n.toml" <<TOML
controllers = [${controllers%, }]
data_dir = "$dir/agent-$n"

[tls]
ca = "$dir/pki/ca.crt"
cert = "$dir/pki/agent-$n.crt"
key = "$dir/pki/agent-$n.key"
TOML
    "$agent_bin" --config "$dir/agent-$n.toml" >>"$dir/agent-$n.log" 2>&1 &
    echo $! > "$dir/agent-$n.pid"
  done
  echo "local cluster up: $nodes controllers, $agents agents, state in $dir"
  echo "  export LEVEE_CLI_CONFIG=$dir/cli.toml; $levee cluster status"
  echo "  stop it with: $0 down --dir $dir"
}

down() {
  local pids=()
  for file in "$dir"/agent-*.pid "$dir"/node-*.pid; do
    [ -e "$file" ] || continue
    pids+=("$(cat "$file")")
  done
  # Agents first, so they stop their workloads while they can.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$dir"/*.pid
  echo "local cluster down (state kept in $dir)"
}

case $command in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [--nodes N] [--agents M] [--dir DIR]" >&2; exit 64 ;;
esac
