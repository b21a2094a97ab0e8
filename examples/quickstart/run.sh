#!/usr/bin/env bash
# Runs the quickstart pipeline with a freshly built sluice. It needs Go and a
# Docker daemon. The pipeline's image is busybox: pulled when a registry can
# be reached, otherwise built locally from Debian's busybox-static
# (SLUICE_PULL=never skips the pull). Arguments go to `sluice run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
go build -o bin/sluice ./cmd/sluice
if ! docker image inspect busybox:latest >/dev/null 2>&1; then
	if [[ ${SLUICE_PULL:-} == never ]] || ! docker pull busybox:latest; then
		echo "quickstart: no registry; building busybox from Debian's busybox-static" >&2
		bash testdata/images/build.sh
		docker tag sluice-test/busybox:latest busybox:latest
	fi
fi
exec bin/sluice run examples/quickstart/valohai.yaml "$@"
