#!/usr/bin/env bash
# Measures `sluice run` against its floor on the local Docker:
#   chain    - 20 busybox steps, each passing a small file to the next, against
#              20 plain `docker run --rm` calls of the same image;
#   parallel - 16 independent 1-second steps at --concurrency 8, against the ideal 2 s;
#   reuse    - rerunning the unchanged chain: no container starts (target <= 1 s, <= 5% of the first run);
#   memory   - sluice's peak RSS while a step writes 1 GB of logs and a 1 GiB output.
# Usage: bash bench/run.sh [chain|parallel|reuse|memory]...   (default: all)
# Needs Docker and the test image (testdata/images/build.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
IMAGE=sluice-test/busybox:latest
go build -o bin/sluice ./cmd/sluice
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

chain() {
	local dir=$work/chain n=20
	mkdir -p "$dir"
	chain_yaml "$n" "$IMAGE" >"$dir/valohai.yaml"
	local t0 floor sl
	t0=$(now)
	for _ in $(seq 1 $n); do docker run --rm "$IMAGE" sh -c 'echo 0 > /tmp/x.txt' >/dev/null; done
	floor=$(elapsed "$t0")
	t0=$(now)
	(cd "$dir" && "$root/bin/sluice" run --pull never >/dev/null)
	sl=$(elapsed "$t0")
	printf 'chain: %d steps: sluice %.2fs, %d x docker run --rm %.2fs, ratio %.2f (target <= 1.10)\n' "$n" "$sl" "$n" "$floor" "$(echo "$sl / $floor" | bc -l)"
}

parallel() {
	local dir=$work/parallel n=16
	mkdir -p "$dir"
	{
		echo "- step: {name: sleep, image: \"$IMAGE\", command: \"sleep 1\"}"
		echo "- pipeline:"
		echo "    name: parallel"
		echo "    nodes:"
		for i in $(seq 1 $n); do echo "      - {name: p$i, type: execution, step: sleep}"; done
		echo "    edges: []"
	} >"$dir/valohai.yaml"
	local t0 sl
	t0=$(now)
	(cd "$dir" && "$root/bin/sluice" run --pull never --concurrency 8 >/dev/null)
	sl=$(elapsed "$t0")
	printf 'parallel: %d x 1s steps at concurrency 8: %.2fs, ideal 2.00s, ratio %.2f (target <= 1.10)\n' "$n" "$sl" "$(echo "$sl / 2" | bc -l)"
}

memory() {
	local dir=$work/memory
	mkdir -p "$dir"
	cat >"$dir/valohai.yaml" <<YAML
- step:
    name: big
    image: $IMAGE
    command:
      - head -c 1073741824 /dev/zero | tr '\\\\0' x | fold -w 99
      - head -c 1073741824 /dev/urandom > /valohai/outputs/big.bin
YAML
	local t0 rss sl
	t0=$(now)
	rss=$(cd "$dir" && { /usr/bin/time -f '%M' "$root/bin/sluice" run --pull never --step big >/dev/null 2>"$work/mem.err"; tail -n1 "$work/mem.err"; })
	sl=$(elapsed "$t0")
	printf 'memory: 1 GB of logs + 1 GiB output in %.1fs: sluice peak RSS %d MiB (target <= 100 MiB)\n' "$sl" "$((rss / 1024))"
}

reuse() {
	local dir=$work/reuse
	mkdir -p "$dir"
	chain >/dev/null # writes the 20-step chain into $work/chain
	cp "$work/chain/valohai.yaml" "$dir/"
	local t0 first again
	t0=$(now)
	(cd "$dir" && "$root/bin/sluice" run --pull never >/dev/null 2>&1)
	first=$(elapsed "$t0")
	t0=$(now)
	(cd "$dir" && "$root/bin/sluice" run --pull never >"$work/reuse.out" 2>&1)
	again=$(elapsed "$t0")
	local reused
	reused=$(grep -c 'reused the result' "$work/reuse.out" || true)
	printf 'reuse: unchanged 20-step chain: first run %.2fs, rerun %.2fs (%.1f%%, target <= 1s and <= 5%%), %d of 20 nodes reused\n' \
		"$first" "$again" "$(echo "100 * $again / $first" | bc -l)" "$reused"
}

root=$PWD
command -v bc >/dev/null || { echo "bench: needs bc (apt-get install bc)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "bench: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null 2>&1 || bash testdata/images/build.sh
for b in "${@:-chain parallel reuse memory}"; do
	for x in $b; do "$x"; done
done
