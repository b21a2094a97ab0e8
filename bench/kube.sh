#!/usr/bin/env bash
# What sluice adds to a node on Kubernetes, measured against kubetest's
# control plane (the real API server, Job controller and scheduler, kwok's
# fake nodes and the Docker node stand-in) with fake-gcs-server as the
# store: the median overhead-ms (a kwok node's wall time in Run minus the
# cluster's own time from the Job's creation to its Complete condition),
# cancel-kwok-ms and cancel-docker-ms (cancel to Run's return, the Job and
# its pods gone).
# Usage: bash bench/kube.sh [N]   (N nodes, default 5). Needs Docker, the
# sluice image (docker build -t sluice:dev .; SLUICE_IMAGE names another),
# the busybox test image and testdata/k8s/build.sh's binaries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
go test ./runner/kube -run '^$' -bench BenchmarkCluster -benchtime "${1:-5}x" | grep -E '^(Benchmark|ok|FAIL)'
