#!/usr/bin/env bash
# The main job in one command: makes sure Docker runs, then deploys the example backend to the
# local Docker Engine and prints its URL. `APP_VERSION=1.1.0 scripts/deploy-example.sh` ships a
# new version with zero downtime; `BREAK=health scripts/deploy-example.sh` shows the automatic
# rollback; `rollback local` goes back.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-docker.sh
# The local engine only: no AWS SDK to compile, so a clean checkout deploys in minutes.
kaapi=(cargo run --release -q --no-default-features -p kaapi-deploy --)
"${kaapi[@]}" --config examples/deploy.toml deploy local "$@"
echo
echo "the example backend serves on http://127.0.0.1:8080 (try /version)"
echo "next: ${kaapi[*]} --config examples/deploy.toml status local"
