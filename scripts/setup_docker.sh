#!/usr/bin/env bash
# Start a Docker engine (if none answers) and build the Python sandbox image without any registry.
# Used by scripts/test.sh so CI runs the Docker sandbox tests for real. Idempotent: a later run reuses the
# daemon and the image (a few seconds). Needs root and Debian's apt (docker.io, debootstrap).
#   STATE   daemon data and logs            (default: ~/.cache/arpo-docker)
#   IMAGE   the sandbox image to build      (default: arpo-sandbox-python:latest; ARPO_DOCKER_IMAGE)
# Notes: dockerd runs with --iptables=false --bridge=none (containers use network_mode="none");
# the image is Debian bookworm minbase + python3 from the mirror apt already uses (debootstrap, no pull).
set -euo pipefail
STATE=${STATE:-$HOME/.cache/arpo-docker}
IMAGE=${IMAGE:-${ARPO_DOCKER_IMAGE:-arpo-sandbox-python:latest}}
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$STATE"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  mkdir -p "$STATE/data"
  nohup dockerd --storage-driver=overlay2 --iptables=false --bridge=none \
        --data-root="$STATE/data" >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$STATE/dockerd.pid"
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $STATE/dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)
  rootfs="$STATE/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3 bookworm "$rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -c . | docker import -c 'CMD ["python3"]' - "$IMAGE" >/dev/null
  rm -rf "$rootfs"
fi

docker run --rm --network=none "$IMAGE" python3 -c 'print("sandbox image ok:", 6 * 7)'
