#!/usr/bin/env bash
# sluice against the plain docker CLI, alternating the two so that both see
# the same machine state (other work on a shared machine comes and goes):
#   chain  - one `sluice run` of 20 busybox steps, each passing a small file
#            to the next, then 20 `docker run --rm` of the same image, one
#            after the other; N pairs, each pair's ratio and the median.
#   fanout - one `sluice run --concurrency 8` of 16 independent `sleep 1`
#            steps, then 16 `docker run --rm ... sleep 1` through
#            `xargs -P 8`; N pairs, each pair's ratio, the median, and the
#            median distance to the ideal 2 s.
# The load average (uptime) is printed with each pair.
# Usage: bash bench/chain.sh [chain|fanout]...   (default: both)
#        N=5 (pairs)  SLUICE_FLAGS= (extra flags for sluice run)
#        SLUICE=path (a sluice binary to measure instead of this checkout's,
#        e.g. an earlier commit's, for a before/after)
# Needs Docker, the test image (testdata/images/build.sh) and bc.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
IMAGE=sluice-test/busybox:latest
N=${N:-5}
root=$PWD
if [[ -z ${SLUICE:-} ]]; then
	go build -o bin/sluice ./cmd/sluice
	SLUICE=$root/bin/sluice
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v bc >/dev/null || { echo "bench: needs bc (apt-get install bc)" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null 2>&1 || bash testdata/images/build.sh

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }
load() { uptime | sed 's/.*load average: //'; }
fanout_yaml() {
	local n=$1
	echo "- step: {name: sleep, image: \"$IMAGE\", command: \"sleep 1\"}"
	echo "- pipeline:"
	echo "    name: fanout"
	echo "    nodes:"
	for i in $(seq 1 "$n"); do echo "      - {name: p$i, type: execution, step: sleep}"; done
	echo "    edges: []"
}

# sluice_run DIR ARGS...: one run in a fresh directory (no reuse: a new
# store each time), its wall time on stdout.
sluice_run() {
	local dir=$1 t0
	shift
	rm -rf "$dir/.sluice"
	t0=$(now)
	# shellcheck disable=SC2086
	(cd "$dir" && "$SLUICE" run --pull never ${SLUICE_FLAGS:-} "$@" >/dev/null 2>"$work/sluice.err") ||
		{ cat "$work/sluice.err" >&2; exit 1; }
	elapsed "$t0"
}

chain() {
	local dir=$work/chain n=20 ratios=() sl dk t0
	mkdir -p "$dir"
	chain_yaml "$n" "$IMAGE" >"$dir/valohai.yaml"
	sluice_run "$dir" >/dev/null # warm-up: page cache, the daemon's image layers
	for p in $(seq 1 "$N"); do
		sl=$(sluice_run "$dir")
		t0=$(now)
		for _ in $(seq 1 $n); do docker run --rm "$IMAGE" sh -c 'echo 0 > /tmp/x.txt' >/dev/null; done
		dk=$(elapsed "$t0")
		ratios+=("$(echo "$sl / $dk" | bc -l)")
		printf 'chain pair %d: sluice %.2fs, %d x docker run --rm %.2fs, ratio %.2f (load %s)\n' "$p" "$sl" $n "$dk" "${ratios[-1]}" "$(load)"
	done
	printf 'chain: median ratio %.2f over %d pairs (target <= 0.75)\n' "$(printf '%s\n' "${ratios[@]}" | median)" "$N"
}

fanout() {
	local dir=$work/fanout n=16 ratios=() dists=() sl dk t0
	mkdir -p "$dir"
	fanout_yaml $n >"$dir/valohai.yaml"
	sluice_run "$dir" --concurrency 8 >/dev/null # warm-up
	for p in $(seq 1 "$N"); do
		sl=$(sluice_run "$dir" --concurrency 8)
		t0=$(now)
		seq 1 $n | xargs -P 8 -I{} docker run --rm "$IMAGE" sleep 1 >/dev/null
		dk=$(elapsed "$t0")
		ratios+=("$(echo "$sl / $dk" | bc -l)")
		dists+=("$(echo "$sl - 2" | bc -l)")
		printf 'fanout pair %d: sluice %.2fs (ideal 2.00s), xargs -P 8 docker run --rm %.2fs, ratio %.2f (load %s)\n' "$p" "$sl" "$dk" "${ratios[-1]}" "$(load)"
	done
	printf 'fanout: median ratio %.2f over %d pairs (target <= 0.85); sluice median %.2fs above the ideal 2 s\n' \
		"$(printf '%s\n' "${ratios[@]}" | median)" "$N" "$(printf '%s\n' "${dists[@]}" | median)"
}

for b in "${@:-chain fanout}"; do
	for x in $b; do "$x"; done
done
