#!/bin/bash
# Container health check (Dockerfile HEALTHCHECK): GET /health/live on the admin listener at
# 127.0.0.1:${SLUICE_ADMIN_PORT:-9901}; exit 0 on a 200, 1 otherwise. bash's /dev/tcp, so the
# image needs no HTTP client.
port=${SLUICE_ADMIN_PORT:-9901}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
IFS=' ' read -r -t 2 version status _ <&3 || exit 1
[[ $version == HTTP/1.* && $status == 200 ]] || { echo "health: ${status:-no answer}" >&2; exit 1; }
