#!/usr/bin/env bash
# Puts Chat21's own MQTT client, unchanged, and the exact mqtt/axios it was written for into a
# cache directory, so that chat21.test.js can drive it:
#
#   $CACHE/mqttclient/chat21client.js   from `npm pack @chat21/chat21-server@<config.chat21_server>`
#                                       (checked against config.chat21client_sha256)
#   $CACHE/node_modules/{mqtt,axios,…}  `npm ci` of this folder's package.json + package-lock.json
#
# $CACHE is $CHAT21_CLIENT_DIR, else ${CARGO_TARGET_DIR:-<repo>/target}/chat21-client.
# Needs node, npm and the npm registry (nothing else). Idempotent: when the cache already matches
# this folder's package.json and package-lock.json it does nothing. Prints the cache directory.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
case "$TARGET" in /*) ;; *) TARGET="$REPO/$TARGET" ;; esac
CACHE="${CHAT21_CLIENT_DIR:-$TARGET/chat21-client}"

command -v node >/dev/null || { echo "setup.sh: node is required" >&2; exit 2; }
command -v npm >/dev/null || { echo "setup.sh: npm is required" >&2; exit 2; }

config() { node -p "require(process.argv[1]).config[process.argv[2]]" "$HERE/package.json" "$1"; }
sha256() { node -e 'process.stdout.write(require("crypto").createHash("sha256").update(require("fs").readFileSync(process.argv[1])).digest("hex"))' "$1"; }

VERSION="$(config chat21_server)"
CLIENT_SHA="$(config chat21client_sha256)"
# What the cache must have been built from: the pins and the lock file.
WANT="$VERSION $CLIENT_SHA $(sha256 "$HERE/package.json") $(sha256 "$HERE/package-lock.json")"

mkdir -p "$CACHE"
# Concurrent test runs share the cache: one builds it, the others wait.
if command -v flock >/dev/null; then
  exec 9>"$CACHE/.lock"
  flock 9
fi

ready() {
  [ -f "$CACHE/.stamp" ] && [ "$(cat "$CACHE/.stamp")" = "$WANT" ] &&
    [ -f "$CACHE/mqttclient/chat21client.js" ] &&
    [ "$(sha256 "$CACHE/mqttclient/chat21client.js")" = "$CLIENT_SHA" ] &&
    [ -f "$CACHE/node_modules/mqtt/package.json" ] &&
    [ -f "$CACHE/node_modules/axios/package.json" ]
}

if ready; then
  echo "$CACHE"
  exit 0
fi

echo "setup.sh: fetching @chat21/chat21-server@$VERSION and installing mqtt/axios into $CACHE" >&2
rm -f "$CACHE/.stamp"
WORK="$(mktemp -d "$CACHE/.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# npm checks the tarball against the registry's integrity; the file is checked against our pin.
TARBALL="$(cd "$WORK" && npm pack --silent "@chat21/chat21-server@$VERSION" | tail -n 1)"
tar -xzf "$WORK/$TARBALL" -C "$WORK" package/mqttclient/chat21client.js
GOT="$(sha256 "$WORK/package/mqttclient/chat21client.js")"
if [ "$GOT" != "$CLIENT_SHA" ]; then
  echo "setup.sh: chat21client.js of @chat21/chat21-server@$VERSION has sha256 $GOT, expected $CLIENT_SHA" >&2
  exit 1
fi
mkdir -p "$CACHE/mqttclient"
cp "$WORK/package/mqttclient/chat21client.js" "$CACHE/mqttclient/chat21client.js"

# chat21client.js does require('mqtt') and require('axios'): Node finds them in $CACHE/node_modules.
cp "$HERE/package.json" "$HERE/package-lock.json" "$CACHE/"
(cd "$CACHE" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)

echo "$WANT" >"$CACHE/.stamp"
ready || { echo "setup.sh: the cache in $CACHE is incomplete after setup" >&2; exit 1; }
echo "$CACHE"
