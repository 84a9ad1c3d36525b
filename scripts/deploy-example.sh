#!/usr/bin/env bash
# The main job in one command: makes sure Docker runs, then deploys the example backend to the
# local Docker Engine and prints its URL. Run it again after changing APP_VERSION in
# examples/deploy.toml to see a zero-downtime update; `rollback local` goes back.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-docker.sh
cargo run --release -q -p kaapi-deploy -- --config examples/deploy.toml deploy local "$@"
echo
echo "the example backend serves on http://127.0.0.1:8080 (try /version)"
echo "next: cargo run --release -q -p kaapi-deploy -- --config examples/deploy.toml status local"
