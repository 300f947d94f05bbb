#!/usr/bin/env bash
# The shipped binary: statically linked (no libc in a FROM scratch image),
# without debug info. glibc's static linking instead of musl, since only
# the host target is installed; --target keeps build scripts and proc
# macros dynamic. Prints the binary's path: target/image/nexrender-exporter,
# a folder that holds only it, the image's build context (cargo's own
# release/ folder holds gigabytes of build products).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' \
CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=true \
  cargo build --release --locked --quiet --target "$target" --target-dir target/static \
  --bin nexrender-exporter >&2
mkdir -p target/image
find target/image -mindepth 1 -delete
cp "target/static/$target/release/nexrender-exporter" target/image/
echo "$PWD/target/image/nexrender-exporter"
