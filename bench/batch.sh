#!/usr/bin/env bash
# What sluice adds to a node on Cloud Batch, measured against the Batch
# stand-in (internal/fakebatch: the real Batch client over gRPC, each job's
# containers on the local Docker) with fake-gcs-server as the store, and the
# executor's default polling: the median first-log-ms (Run to the step's
# first log line), overhead-ms (the node's wall time minus the stand-in's
# own time for the job) and cancel-ms (cancel to Run's return, the job
# deleted). SLUICE_BATCH_BENCH_POLL=100ms polls the job faster.
# Usage: bash bench/batch.sh [N]   (N nodes, default 5). Needs Docker, the
# sluice image (docker build -t sluice:dev .) and the busybox test image.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
go test ./runner/batch -run '^$' -bench BenchmarkStandIn -benchtime "${1:-5}x" | grep -E '^(Benchmark|ok|FAIL)'
