#!/usr/bin/env bash
# Makes the base image docker/Dockerfile builds FROM (debian:bookworm-slim) without an image
# registry: debootstrap a minimal bookworm from the machine's Debian mirror, import it into
# podman. The root file system tarball is cached (~/.cache/sluice; about 30 s to 2 min to make,
# once) and the image stays in podman's storage, so later runs cost nothing. Both are made again
# when this script changes (its checksum labels them).
#   scripts/container-base.sh           make it unless podman already has this recipe's image
#   scripts/container-base.sh --force   make it again (fresh debootstrap)
# Needs root (debootstrap, podman's system store) and scripts/setup.sh --containers.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${SLUICE_BASE_IMAGE:-debian:bookworm-slim}
cache=${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}
recipe=$(sha256sum scripts/container-base.sh | cut -c1-12)
tarball="$cache/debian-bookworm-minbase-$recipe.tar"
label=io.sluice.base-recipe

if [ "${1:-}" = "--force" ]; then
  rm -f "$tarball"
elif [ "$(podman image inspect --format "{{index .Labels \"$label\"}}" "$image" 2>/dev/null)" = "$recipe" ]; then
  exit 0
fi

if [ ! -s "$tarball" ]; then
  mirror=$(bash scripts/debian-mirror.sh)
  mkdir -p "$cache"
  rm -f "$cache"/debian-bookworm-minbase-*.tar  # other recipes
  root=$(mktemp -d /var/tmp/sluice-rootfs.XXXXXX)
  trap 'rm -rf "$root" "$tarball.partial"' EXIT
  echo "container-base: debootstrap --variant=minbase bookworm from $mirror (once)"
  start=$SECONDS
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
    tail -20 "$cache/debootstrap.log" >&2
    exit 1
  }
  # The suites of Debian's own images: bookworm, bookworm-updates, and the security archive
  # when this machine uses one.
  security=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /security/) {print $i; exit}}' \
               /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  rm -f "$root/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
  # Like Debian's slim images: no apt lists or package caches in the base.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar --numeric-owner -C "$root" -c . >"$tarball.partial"
  mv "$tarball.partial" "$tarball"
  echo "container-base: rootfs cached in $tarball ($((SECONDS - start)) s)"
fi
podman import --quiet --change "LABEL $label=$recipe" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' "$tarball" "$image" >/dev/null
echo "container-base: imported $image ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
