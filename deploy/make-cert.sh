#!/bin/sh
# A self-signed TLS certificate for nginx in staging (deploy/docker-compose.staging.yml mounts
# deploy/nginx/tls/). Usage: deploy/make-cert.sh [output dir] [host name]
# Production uses a certificate from a real CA (k8s/: cert-manager or the ingress's own).
set -eu
out=${1:-"$(dirname "$0")/nginx/tls"}
host=${2:-localhost}
mkdir -p "$out"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 365 \
    -subj "/CN=$host" -addext "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" \
    -keyout "$out/tls.key" -out "$out/tls.crt" 2>/dev/null
chmod 644 "$out/tls.crt"
echo "wrote $out/tls.crt and $out/tls.key for $host"
