#!/usr/bin/env bash
# Creates the venv with the AWS emulator (moto) and the validators the tests use.
# Location: $KAAPI_VENV (default /opt/kaapi-venv). Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${KAAPI_VENV:-/opt/kaapi-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha"
want="$(sha256sum "$here/python-tools.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/python-tools.txt"
  echo "$want" > "$stamp"
fi
echo "python tools ready in $venv"
