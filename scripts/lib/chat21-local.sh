# shellcheck shell=bash
# Sourced by the scripts that run something against a throwaway chat21-local (scripts/chat21-client,
# scripts/smoke-local). Run from the repository's root.
#
#   start_chat21_local OUTDIR
#
# starts target/debug/chat21-local (under $CARGO_TARGET_DIR when set; built first if missing) on
# free loopback ports (PORT, MQTT_WS_PORT, MQTT_TCP_PORT = 0), its data in memory, with the JWT_KEY of the environment,
# its stdout and log in OUTDIR, and waits until it prints its URLs. Sets CHAT21_LOCAL_PID,
# CHAT21_LOCAL_HTTP (http://127.0.0.1:PORT) and CHAT21_LOCAL_WS (ws://127.0.0.1:PORT/ws). The
# caller stops it (e.g. `trap 'kill "$CHAT21_LOCAL_PID"' EXIT`). Returns 1 if it does not start.

start_chat21_local() {
  local out=$1 server=${CARGO_TARGET_DIR:-target}/debug/chat21-local
  [[ -x $server ]] || cargo build -p chat21-local
  mkdir -p "$out"
  # In memory: a throwaway server whose data nobody needs afterwards (and nothing to clean up).
  DATA_DIR=:memory: PORT=0 MQTT_WS_PORT=0 MQTT_TCP_PORT=0 RUST_LOG=${RUST_LOG:-warn} "$server" >"$out/server.out" 2>"$out/server.log" &
  CHAT21_LOCAL_PID=$!
  CHAT21_LOCAL_HTTP='' CHAT21_LOCAL_WS=''
  for _ in $(seq 200); do
    CHAT21_LOCAL_HTTP=$(sed -n 's|^chat21-local listening on \(http://127\.0\.0\.1:[0-9]*\)$|\1|p' "$out/server.out")
    CHAT21_LOCAL_WS=$(sed -n 's|^chat21-local MQTT over WebSocket on \(ws://127\.0\.0\.1:[0-9]*/ws\)$|\1|p' "$out/server.out")
    [[ -n $CHAT21_LOCAL_HTTP && -n $CHAT21_LOCAL_WS ]] && return 0
    kill -0 "$CHAT21_LOCAL_PID" 2>/dev/null || { echo "chat21-local exited; see $out/server.log" >&2; return 1; }
    sleep 0.1
  done
  echo "chat21-local did not start within 20 s; see $out/server.log" >&2
  return 1
}

# A random HS256 secret (24 bytes, base64url), for a server nobody else will talk to.
random_jwt_key() {
  node -e 'process.stdout.write(require("crypto").randomBytes(24).toString("base64url"))'
}
