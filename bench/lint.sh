#!/usr/bin/env bash
# Measures `sluice lint` of large generated files (bench/lintgen) and how
# soon it stops on SIGTERM:
#   size   - wall time, time per step and peak RSS (/usr/bin/time -f %M) of
#            the real binary on 10k, 40k and 160k minimal steps, a 15 MiB file
#            of them, and 10k/40k-node pipelines; targets: time per step flat
#            within 2x from 10k to 160k, the 15 MiB file in <= 5 s, peak RSS
#            <= 20x the file's size;
#   signal - SIGTERM 0.5 s into the lint of the 15 MiB file, ROUNDS (5) times:
#            the exit code (target 143) and the time from the signal to the
#            exit (target <= 1 s).
# Usage: bash bench/lint.sh [size|signal]...   (default: both)
# Needs /usr/bin/time (Debian package time) and bc.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
go build -o bin/sluice ./cmd/sluice
go build -o bin/lintgen ./bench/lintgen
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ROUNDS=${ROUNDS:-5}

now() { date +%s.%N; }

size() {
	local kind n file bytes steps out secs kb
	for spec in steps:10000 steps:40000 steps:160000 size:15 pipeline:10000 pipeline:40000; do
		kind=${spec%%:*} n=${spec#*:}
		file=$work/$kind-$n.yaml
		bin/lintgen "$kind" "$n" "$file"
		bytes=$(stat -c %s "$file")
		steps=$(grep -c '^- step:' "$file")
		/usr/bin/time -o "$work/time" -f '%e %U %S %M' bin/sluice lint "$file" >/dev/null 2>&1 || true
		read -r secs user sys kb <"$work/time"
		printf '%-16s %9d bytes %7d steps: %6.2f s (cpu %5.2f s), %6.0f ns/step, peak RSS %4d MiB = %5.1fx the file\n' \
			"$kind=$n" "$bytes" "$steps" "$secs" "$(echo "$user + $sys" | bc -l)" "$(echo "$secs * 1000000000 / $steps" | bc -l)" \
			$((kb / 1024)) "$(echo "$kb * 1024 / $bytes" | bc -l)"
	done
}

signal() {
	local file=$work/signal.yaml pid t0 code took worst=0
	bin/lintgen size 15 "$file"
	for i in $(seq 1 "$ROUNDS"); do
		bin/sluice lint "$file" >/dev/null 2>"$work/stderr" &
		pid=$!
		sleep 0.5
		t0=$(now)
		kill -TERM "$pid"
		code=0
		wait "$pid" || code=$?
		took=$(echo "$(now) - $t0" | bc)
		printf 'signal %d: exit %d %.3f s after SIGTERM: %s\n' "$i" "$code" "$took" "$(head -c 200 "$work/stderr" | tr '\n' '|')"
	done
}

for what in "${@:-size signal}"; do
	for w in $what; do "$w"; done
done
