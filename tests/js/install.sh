#!/usr/bin/env bash
# Installs the npm clients that judge Corral's front doors in tests (pinned
# by package-lock.json) with `npm ci`, when Node.js 20 or later is here.
# Without it, says so; the tests that need it then report themselves
# skipped, or fail where CORRAL_REQUIRE_JS=1 (CI). Does nothing when
# node_modules already matches the lock file.
set -euo pipefail
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
missing() {
  echo "tests/js: $1: the tests that drive Corral with npm clients need Node.js 20 or later" >&2
  if [ "${CORRAL_REQUIRE_JS:-0}" = 1 ]; then exit 1; fi
  exit 0
}
command -v node >/dev/null && command -v npm >/dev/null || missing "no node or npm"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || missing "Node.js $(node --version) is too old"
stamp=$dir/node_modules/.corral-lock
if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/package-lock.json"; then
  exit 0
fi
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
cp "$dir/package-lock.json" "$stamp"
