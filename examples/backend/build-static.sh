#!/usr/bin/env bash
# Builds a fully static kaapi-example-backend (glibc, +crt-static) and copies
# it to dist/, which is all the FROM scratch Dockerfile needs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target=x86_64-unknown-linux-gnu
# A separate target dir: different RUSTFLAGS would otherwise invalidate the
# normal build's cache on every switch.
target_dir="${STATIC_TARGET_DIR:-$root/target/static}"

# --target makes RUSTFLAGS apply to the binary only, not to build scripts
# and proc macros, which must stay dynamically linked to run on the host.
RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$target_dir" \
    cargo build --release --target "$target" \
    --manifest-path "$root/Cargo.toml" -p kaapi-example-backend

bin="$target_dir/$target/release/kaapi-example-backend"
# A dynamic binary would fail in a scratch image with a confusing
# "no such file or directory" from the missing loader; catch it here.
if command -v readelf >/dev/null && readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
    echo "error: $bin is dynamically linked" >&2
    exit 1
fi

mkdir -p "$here/dist"
cp "$bin" "$here/dist/kaapi-example-backend.tmp"
mv "$here/dist/kaapi-example-backend.tmp" "$here/dist/kaapi-example-backend"
echo "built $here/dist/kaapi-example-backend ($(du -h "$here/dist/kaapi-example-backend" | cut -f1))"
