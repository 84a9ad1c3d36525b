#!/usr/bin/env bash
# Makes sure a Docker Engine runs here: installs Debian's docker.io (and docker-registry,
# busybox-static and groff-base, used by the tests) when missing, starts dockerd when it is not
# running, and waits for it.
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
# Test images are built FROM scratch around Debian's static busybox (no image can be pulled).
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
# The man page test renders the generated page with groff.
command -v groff >/dev/null || missing+=(groff-base)
# The benchmark's peer (docker-compose up --force-recreate) needs Debian's docker-compose.
if [ "${KAAPI_WITH_COMPOSE:-0}" = 1 ]; then
    command -v docker-compose >/dev/null || missing+=(docker-compose)
fi
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
