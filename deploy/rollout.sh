#!/usr/bin/env bash
# Roll taskgate out to Kubernetes with one image: the schema first, then the processes.
#   deploy/rollout.sh ghcr.io/<owner>/taskgate:<commit sha>
# What CI's deploy job runs (.github/workflows/ci.yml), with kubectl pointed at the cluster.
# The manifests in k8s/ name the image registry.invalid/taskgate:set-by-ci; this is replaced.
set -euo pipefail

image=${1:?usage: deploy/rollout.sh <image>}
k8s="$(cd "$(dirname "$0")/../k8s" && pwd)"
namespace=taskgate
placeholder='registry.invalid/taskgate:set-by-ci'

with_image() {
    sed "s|${placeholder}|${image}|g" "$@"
}

kubectl apply -f "$k8s/00-namespace.yaml" -f "$k8s/10-config.yaml"

# 1. The migration, to completion, with the new image (a Job's pod template cannot change).
kubectl -n "$namespace" delete job taskgate-migrate --ignore-not-found --wait=true
with_image "$k8s/20-migrate.yaml" | kubectl apply -f -
if ! kubectl -n "$namespace" wait --for=condition=complete job/taskgate-migrate --timeout=15m; then
    kubectl -n "$namespace" logs job/taskgate-migrate --tail=200 || true
    echo "migration failed: nothing else was rolled out" >&2
    exit 1
fi

# 2. Everything else; a RollingUpdate with maxUnavailable 0 replaces the pods.
for manifest in "$k8s"/[3-9]*.yaml; do
    with_image "$manifest" | kubectl apply -f -
done
kubectl -n "$namespace" rollout status deployment/taskgate-api --timeout=10m
kubectl -n "$namespace" rollout status deployment/taskgate-scheduler --timeout=10m
# Old workers drain their running jobs first (terminationGracePeriodSeconds: 600).
kubectl -n "$namespace" rollout status deployment/taskgate-worker --timeout=30m
