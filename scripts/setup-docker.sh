#!/usr/bin/env bash
# Makes sure a Docker Engine runs here: installs Debian's docker.io (and docker-registry, used
# by the registry tests) when missing, starts dockerd when it is not running, and waits for it.
set -euo pipefail

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then sudo "$@"; else
            echo "error: run this as root (or install sudo): $*" >&2
            exit 1
        fi
    else
        "$@"
    fi
}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-registry >/dev/null || missing+=(docker-registry)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    need_root apt-get update -qq
    need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if docker info >/dev/null 2>&1; then
    echo "Docker Engine is running"
    exit 0
fi

log="${DOCKERD_LOG:-/tmp/dockerd.log}"
echo "starting dockerd (log: $log)"
need_root sh -c "nohup dockerd >'$log' 2>&1 &"
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        echo "Docker Engine is running"
        exit 0
    fi
    sleep 1
done
echo "error: dockerd did not answer within 60s; see $log" >&2
exit 1
