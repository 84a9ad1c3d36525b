#!/usr/bin/env bash
# The test command: sets up what the tests need (Docker Engine, registry binary, the Python
# venv with moto and the validators, the example backend's static binary), then runs every
# test of the workspace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup-docker.sh
bash scripts/setup-python.sh
bash scripts/setup-chromium.sh
bash examples/backend/build-static.sh

export KAAPI_VENV="${KAAPI_VENV:-/opt/kaapi-venv}"
# Two cores: run test binaries with limited parallelism so Docker-heavy tests do not starve.
cargo test --workspace --locked --no-fail-fast -- --test-threads="${KAAPI_TEST_THREADS:-2}"
# The local-only build (what deploy-example.sh runs): no AWS SDK, clear errors for ECS.
cargo test --locked -p kaapi-deploy --no-default-features --test cli local_only::
