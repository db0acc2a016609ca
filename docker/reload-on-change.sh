#!/bin/bash
# Reloads Sluice when its mounted config changes: the sidecar of docker/k8s/deployment.yaml.
# Kubernetes updates a mounted ConfigMap or Secret in place (kubelet swaps the `..data` symlink
# of the volume) but tells no process. Every SLUICE_RELOAD_INTERVAL seconds (default 5) this
# checksums the files under DIR; on a change it sends SIGHUP to the pid in SLUICE_PID_FILE
# (default /run/sluice/sluice.pid, Sluice's server.pid_file on a volume both containers mount;
# the pod shares its process namespace). A reload drops nothing; a bad file is refused by
# Sluice, which keeps the running config, logs why and counts
# sluice_config_reloads_total{result="error"}.
#   sluice-reload-on-change [DIR]        DIR default /etc/sluice
set -u
dir=${1:-/etc/sluice}
interval=${SLUICE_RELOAD_INTERVAL:-5}
pid_file=${SLUICE_PID_FILE:-/run/sluice/sluice.pid}
trap 'exit 0' TERM INT

log() { printf '{"time":"%s","msg":"%s"%s}\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$1" "${2:-}"; }

# The files under dir with their contents' checksums, following the symlinks a ConfigMap
# volume is made of and skipping kubelet's `..` entries.
fingerprint() {
  find -L "$dir" -type f -not -path '*/..*' -print0 2>/dev/null | sort -z | xargs -0 -r cksum
}

last=$(fingerprint)
log "watching config" ",\"dir\":\"$dir\",\"pid_file\":\"$pid_file\",\"interval_s\":\"$interval\""
while :; do
  sleep "$interval" &
  wait $!
  now=$(fingerprint)
  [ "$now" = "$last" ] && continue
  pid=$(cat "$pid_file" 2>/dev/null)
  if [[ ! $pid =~ ^[0-9]+$ ]] || ! kill -HUP "$pid" 2>/dev/null; then
    log "config changed, cannot signal sluice yet" ",\"pid_file\":\"$pid_file\""
    continue  # keep the old fingerprint: try again next round
  fi
  log "config changed, sent SIGHUP" ",\"pid\":$pid"
  last=$now
done
