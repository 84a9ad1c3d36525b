#!/usr/bin/env bash
# Makes sure a Docker Engine runs on this machine: installs Debian's docker.io (and
# docker-registry, used by tests) when missing, starts dockerd when it is not running, and
# waits until it answers. Needs root. Idempotent.
set -euo pipefail

need_install=()
command -v dockerd >/dev/null 2>&1 || need_install+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || need_install+=(docker-registry)
if [ "${KAAPI_WITH_COMPOSE:-0}" = 1 ] && ! command -v docker-compose >/dev/null 2>&1; then
  need_install+=(docker-compose)
fi
if [ ${#need_install[@]} -gt 0 ]; then
  echo "installing ${need_install[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq "${need_install[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  echo "Docker Engine is running"
  exit 0
fi

echo "starting dockerd (log: /var/log/kaapi-dockerd.log)"
nohup dockerd >/var/log/kaapi-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "Docker Engine is running"
    exit 0
  fi
  sleep 1
done
echo "error: dockerd did not start within 60 s; see /var/log/kaapi-dockerd.log" >&2
exit 1
