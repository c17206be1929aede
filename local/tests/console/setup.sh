#!/usr/bin/env bash
# Installs what the console's browser test needs, and nothing else:
#
#   /usr/bin/chromium                    Debian's chromium package (apt-get, when missing)
#   $CACHE/node_modules/playwright-core  `npm ci` of this folder's package.json + package-lock.json
#                                        (playwright-core downloads no browser: it drives the one above)
#
# $CACHE is $CONSOLE_TEST_DIR, else ${CARGO_TARGET_DIR:-<repo>/target}/console-test. Needs node,
# npm and the npm registry, and apt-get (as root) when Chromium is missing. Idempotent: does
# nothing when both are in place. Prints the cache directory.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
case "$TARGET" in /*) ;; *) TARGET="$REPO/$TARGET" ;; esac
CACHE="${CONSOLE_TEST_DIR:-$TARGET/console-test}"
CHROMIUM=/usr/bin/chromium

command -v node >/dev/null || { echo "setup.sh: node is required" >&2; exit 2; }
command -v npm >/dev/null || { echo "setup.sh: npm is required" >&2; exit 2; }

if [ ! -x "$CHROMIUM" ]; then
  command -v apt-get >/dev/null || { echo "setup.sh: $CHROMIUM is missing and there is no apt-get" >&2; exit 2; }
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
  echo "setup.sh: installing Debian's chromium with apt-get" >&2
  started=$SECONDS
  "${SUDO[@]}" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q chromium >&2
  echo "setup.sh: chromium installed in $((SECONDS - started)) s" >&2
  [ -x "$CHROMIUM" ] || { echo "setup.sh: apt-get installed no $CHROMIUM" >&2; exit 1; }
fi

sha256() { node -e 'process.stdout.write(require("crypto").createHash("sha256").update(require("fs").readFileSync(process.argv[1])).digest("hex"))' "$1"; }
WANT="$(sha256 "$HERE/package.json") $(sha256 "$HERE/package-lock.json")"

mkdir -p "$CACHE"
# Concurrent runs share the cache: one builds it, the others wait.
if command -v flock >/dev/null; then
  exec 9>"$CACHE/.lock"
  flock 9
fi
if [ -f "$CACHE/.stamp" ] && [ "$(cat "$CACHE/.stamp")" = "$WANT" ] &&
  [ -f "$CACHE/node_modules/playwright-core/package.json" ]; then
  echo "$CACHE"
  exit 0
fi
echo "setup.sh: installing playwright-core into $CACHE" >&2
rm -f "$CACHE/.stamp"
cp "$HERE/package.json" "$HERE/package-lock.json" "$CACHE/"
(cd "$CACHE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
[ -f "$CACHE/node_modules/playwright-core/package.json" ] || { echo "setup.sh: npm ci left no playwright-core" >&2; exit 1; }
echo "$WANT" >"$CACHE/.stamp"
echo "$CACHE"
