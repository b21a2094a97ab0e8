#!/usr/bin/env bash
# Measures the store transfer (`transfer: store`: the step's files go through
# `sluice agent` and a gs:// store, as on remote backends) on the local
# Docker, against fake-gcs-server on 127.0.0.1 (`gcsbench serve`, a process
# of its own, filesystem backend in a temp directory):
#   chain - the 20-step chain of run.sh, every node in a docker environment
#           with transfer: store and a gs:// store, against the same chain
#           with the local transfer and a local store; PAIRS pairs (default
#           5), alternating which goes first, each run on a fresh store;
#           prints each pair and the median of the ratios;
#   bulk  - a node that writes 1 GiB of outputs (100 files of 10 MiB) and a
#           second that reads them as its input and writes 1 GiB again, with
#           transfer: store, against the floor: the same two commands in a
#           plain `docker run --rm` (no transfer at all) plus the plain
#           storage client moving what the agents move (2 GiB up, 1 GiB down
#           as 10 MiB files: `gcsbench transfer -client plain`); ROUNDS
#           rounds (default 3), alternating, best of each side. (100 files,
#           not one: fake-gcs-server's resumable uploads are quadratic in the
#           object's size, see the GCS section of bench/README.md.)
# Usage: bash bench/store.sh [chain|bulk]...   (default: both)
# Needs Docker, the test image (testdata/images/build.sh), the sluice image
# (SLUICE_IMAGE, default sluice:dev: `docker build -t sluice:dev .`), bc.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
IMAGE=sluice-test/busybox:latest
SLUICE_IMAGE=${SLUICE_IMAGE:-sluice:dev}
PAIRS=${PAIRS:-5}
ROUNDS=${ROUNDS:-3}
GiB=$((1 << 30))
export SLUICE_IMAGE

command -v bc >/dev/null || { echo "bench: needs bc (apt-get install bc)" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null 2>&1 || bash testdata/images/build.sh
docker image inspect "$SLUICE_IMAGE" >/dev/null 2>&1 ||
	{ echo "bench: no image $SLUICE_IMAGE: docker build -t sluice:dev . (or set SLUICE_IMAGE)" >&2; exit 1; }
go build -o bin/sluice ./cmd/sluice
# shellcheck source=bench/lib.sh
source bench/lib.sh
start_fake_gcs
# The bucket the gs:// stores live in.
curl -sf -X POST -H 'Content-Type: application/json' -d '{"name":"bench"}' "$url/storage/v1/b?project=bench" >/dev/null ||
	{ echo "bench: could not create the bucket" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

# store_yaml DIR: every node of DIR's pipeline runs with transfer: store.
store_yaml() {
	cat >"$1/sluice.yaml" <<'YAML'
default-environment: store
environments:
  store:
    backend: docker
    transfer: store
    # fake-gcs-server listens on this host's loopback.
    network: host
YAML
}

# timed_run DIR STORE: seconds of one `sluice run` of DIR's pipeline.
timed_run() {
	local t0
	t0=$(now)
	(cd "$1" && "$root/bin/sluice" run --pull never --store "$2" >"$work/run.out" 2>&1) ||
		{ cat "$work/run.out" >&2; echo "bench: sluice run failed" >&2; exit 1; }
	elapsed "$t0"
}

chain() {
	local n=20 i local_dir=$work/chain-local store_dir=$work/chain-store
	mkdir -p "$local_dir" "$store_dir"
	chain_yaml "$n" "$IMAGE" >"$local_dir/valohai.yaml"
	cp "$local_dir/valohai.yaml" "$store_dir/"
	store_yaml "$store_dir"
	local ratios=() l s
	for i in $(seq 1 "$PAIRS"); do
		if ((i % 2)); then
			l=$(timed_run "$local_dir" "$work/local-store-$i")
			s=$(timed_run "$store_dir" "gs://bench/chain-$i")
		else
			s=$(timed_run "$store_dir" "gs://bench/chain-$i")
			l=$(timed_run "$local_dir" "$work/local-store-$i")
		fi
		ratios+=("$(echo "$s / $l" | bc -l)")
		printf '  pair %d: store transfer %.2fs, local transfer %.2fs, ratio %.2f (load %s)\n' "$i" "$s" "$l" "${ratios[-1]}" \
			"$(cut -d' ' -f1 /proc/loadavg)" >&2
	done
	printf 'store chain: %d steps, %d pairs: median ratio store/local %.2f\n' "$n" "$PAIRS" "$(printf '%s\n' "${ratios[@]}" | median)"
}

bulk() {
	local dir=$work/bulk
	mkdir -p "$dir"
	cat >"$dir/valohai.yaml" <<YAML
- step:
    name: make
    image: $IMAGE
    # Each file different (no two blobs alike): its number, then zeros.
    command: for i in \$(seq 1 100); do { echo \$i; head -c $((GiB / 100)) /dev/zero; } > /valohai/outputs/part-\$i.bin; done
- step:
    name: copy
    image: $IMAGE
    command: for f in /valohai/inputs/in/*; do { cat \$f; echo; } > /valohai/outputs/\$(basename \$f); done
    inputs: [{name: in}]
- pipeline:
    name: bulk
    nodes:
      - {name: make, type: execution, step: make}
      - {name: copy, type: execution, step: copy}
    edges:
      - [make.output.*, copy.input.in]
YAML
	store_yaml "$dir"
	local best_s=0 best_f=0 r s f t0 cmds line up down
	for r in $(seq 1 "$ROUNDS"); do
		for side in $( ((r % 2)) && echo "store floor" || echo "floor store"); do
			if [ "$side" = store ]; then
				s=$(timed_run "$dir" "gs://bench/bulk-$r")
				best_s=$(echo "if ($best_s == 0 || $s < $best_s) $s else $best_s" | bc -l)
				printf '  round %d: sluice, transfer store: %.2fs (load %s)\n' "$r" "$s" "$(cut -d' ' -f1 /proc/loadavg)" >&2
				continue
			fi
			t0=$(now)
			docker run --rm "$IMAGE" sh -c "mkdir /tmp/a /tmp/b && for i in \$(seq 1 100); do { echo \$i; head -c $((GiB / 100)) /dev/zero; } > /tmp/a/\$i; done &&
				for f in /tmp/a/*; do { cat \$f; echo; } > /tmp/b/\$(basename \$f); done" >/dev/null
			cmds=$(elapsed "$t0")
			# What the agents move: make's output up; copy's input down and its output up.
			line=$(bin/gcsbench transfer -client plain -files 200 -total $((2 * GiB)) -source file -sink file)
			up=$(awk '{for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "up") print kv[2] }}' <<<"$line")
			down=$(awk '{for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "down") print kv[2] }}' <<<"$line")
			f=$(echo "$cmds + $up + $down / 2" | bc -l)
			best_f=$(echo "if ($best_f == 0 || $f < $best_f) $f else $best_f" | bc -l)
			printf '  round %d: floor %.2fs (commands in docker run %.2fs, plain client 2 GiB up %.2fs, 1 GiB down %.2fs) (load %s)\n' \
				"$r" "$f" "$cmds" "$up" "$(echo "$down / 2" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)" >&2
		done
	done
	printf 'store bulk: 1 GiB (100 files) out, in and out again: sluice %.2fs, floor %.2fs, ratio %.2f, agent overhead %.2fs (best of %d)\n' \
		"$best_s" "$best_f" "$(echo "$best_s / $best_f" | bc -l)" "$(echo "$best_s - $best_f" | bc -l)" "$ROUNDS"
}

for b in "${@:-chain bulk}"; do
	for x in $b; do
		case $x in
		chain | bulk) "$x" ;;
		*) echo "unknown benchmark $x: use chain or bulk" >&2; exit 2 ;;
		esac
	done
done
