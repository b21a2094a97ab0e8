#!/usr/bin/env bash
# How long SIGTERM takes to clean a kubernetes node up, through the real
# binary: TestKubeSIGTERMDeletesJobs (cmd/sluice) runs train as a Job on the
# real control plane (internal/kubetest) with the Docker node stand-in
# (internal/kubetest/dockerlet), signals sluice once train's first epoch is
# logged, and logs when sluice exited and when no Job or pod of the run was
# left. This runs it N times and prints each pair and the medians.
# Usage: bash bench/kube-cancel.sh [N]   (default 5). Needs Docker, the
# control plane (testdata/k8s/build.sh), the sluice image (SLUICE_IMAGE,
# default sluice:dev) and the busybox test image.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n="${1:-5}"
go test ./cmd/sluice -run '^TestKubeSIGTERMDeletesJobs$' -count "$n" -v 2>&1 |
	grep -o 'sluice exited [0-9.]*m\?s after SIGTERM; no Job or pod left [0-9.]*m\?s' |
	awk '
	function ms(s) { return s ~ /ms$/ ? s + 0 : s * 1000 }
	{ e[NR] = ms($3); g[NR] = ms($11); printf "exit %6.0f ms, nothing left %6.0f ms\n", e[NR], g[NR] }
	function median(a, k,   i, j, t) {
		for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	END {
		if (NR == 0) { print "no measurement: the test failed (run it with -v)"; exit 1 }
		printf "kube-cancel: %d runs: median exit %.0f ms, median nothing left %.0f ms (target <= 7000)\n", NR, median(e, NR), median(g, NR)
	}'
