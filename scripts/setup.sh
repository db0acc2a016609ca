#!/usr/bin/env bash
# Installs everything Sluice needs to build, test and benchmark, from Debian's registry only.
# Idempotent: re-running it on a machine that has everything does (almost) nothing.
#   scripts/setup.sh          build + test dependencies
#   scripts/setup.sh --bench  also nginx, haproxy, wrk, gnuplot for bench/
#   scripts/setup.sh --lint   also clang-tidy-14 for scripts/lint.sh (options combine)
#   scripts/setup.sh --browser  also chromium, driven headless by the browser (CORS) tests
#   scripts/setup.sh --sanitize also clang-14, its sanitizer/libFuzzer runtimes and
#                               llvm-symbolizer for scripts/sanitize.sh
#   scripts/setup.sh --runtime  only what the built binary needs to run (container image)
set -euo pipefail

want_bench=0
want_lint=0
want_browser=0
want_sanitize=0
runtime_only=0
for a in "$@"; do
  case "$a" in
    --bench) want_bench=1 ;;
    --lint) want_lint=1 ;;
    --browser) want_browser=1 ;;
    --sanitize) want_sanitize=1 ;;
    --runtime) runtime_only=1 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

pkgs=(build-essential cmake pkg-config libuv1-dev libssl-dev libhiredis-dev
      libtomlplusplus-dev doctest-dev redis-server curl openssl ca-certificates python3
      python3-pytest nlohmann-json3-dev libre2-dev)
if [ "$want_bench" = 1 ]; then
  pkgs+=(nginx-light haproxy wrk gnuplot-nox)
fi
if [ "$want_lint" = 1 ]; then
  pkgs+=(clang-tidy-14)
fi
if [ "$want_sanitize" = 1 ]; then
  pkgs+=(clang-14 libclang-rt-14-dev llvm-14)
fi
if [ "$want_browser" = 1 ]; then
  # the browser-level (CORS) integration tests drive it headless (sluicetest.browser); without
  # it those tests are skipped
  pkgs+=(chromium)
fi
if [ "$runtime_only" = 1 ]; then
  pkgs=(libuv1 libssl3 libhiredis0.14 libtomlplusplus3 libre2-9 ca-certificates curl)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# llhttp 9.2 is in trixie, not bookworm. Fetch the two .debs from the trixie suite of the same
# registry the machine already uses, through a throw-away apt state, then install them with dpkg.
llhttp_debs="libllhttp9.2 libllhttp-dev"
[ "$runtime_only" = 1 ] && llhttp_debs="libllhttp9.2"
installed=$(dpkg-query -W -f='${Status}\n' $llhttp_debs 2>/dev/null | grep -c "install ok installed" || true)
if [ "$installed" -ne "$(echo $llhttp_debs | wc -w)" ]; then
  mirror=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    mirror=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' "$f")
    [ -n "$mirror" ] && break
  done
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $2 !~ /security/ && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$mirror" ] || { echo "setup: cannot find the Debian mirror in /etc/apt" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$tmp/sources.list"
  aptopts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
           -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::Archives=$tmp/archives"
           -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root")
  echo "setup: fetching libllhttp from trixie"
  $SUDO apt-get "${aptopts[@]}" update -qq
  (cd "$tmp" && $SUDO apt-get "${aptopts[@]}" download $llhttp_debs)
  $SUDO dpkg -i "$tmp"/libllhttp*.deb >/dev/null
fi

# The test harness starts its own redis-server processes; the packaged service is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  $SUDO systemctl stop redis-server >/dev/null 2>&1 || true
fi
echo "setup: ok"
