#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt uses (the first non-security URI in
# /etc/apt/sources.list.d/*.sources, else /etc/apt/sources.list). Used by setup.sh (llhttp from
# trixie) and container-base.sh (debootstrap).
set -euo pipefail
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  mirror=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' "$f")
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $2 !~ /security/ && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "cannot find the Debian mirror in /etc/apt" >&2; exit 1; }
echo "$mirror"
