#!/usr/bin/env bash
# Measures sluice's GCS store (store.PutBlob / store.OpenBlob on store/gcs)
# against the plain cloud.google.com/go/storage client doing the same
# transfer, both against fake-gcs-server on 127.0.0.1 in a process of its own
# (filesystem backend in a temp directory, so that its memory and CPU are
# not the client's):
#   ratio - upload then download 1 GiB as 100 files and as 1 file, each client
#           in its own process, alternating which goes first; best of ROUNDS
#           (ROUNDS_BIG for the single file); throughput ratio sluice/plain
#           (target >= 0.9);
#   rss   - sluice's peak RSS (/usr/bin/time -f %M, the transfer process
#           alone) while it uploads and downloads RSS_BYTES (10 GiB) as
#           RSS_FILES (100) files (target <= 100 MiB); RSS_PLAIN=1 measures the
#           plain client too, for reference.
# Usage: bash bench/gcs.sh [ratio|rss]...   (default: both)
# Environment: ROUNDS (3), ROUNDS_BIG (1), WORKERS (1: files moved at once;
# a run stores up to 2 outputs of a node at once), CHUNK (upload chunk size of
# both clients, 8 MiB: store/gcs.DefaultChunkSize), SOURCE (file: both upload
# from files on disk, written before the clock starts, as a run stores its
# outputs; stream: from generated content, which sluice has to spool), SINK
# (file, the default: both write each download to a file, as a run does with
# its inputs; discard: both drop it, which measures sha256 against CRC32C),
# RSS_BYTES, RSS_FILES, RSS_PLAIN.
# Needs Go, awk and /usr/bin/time (Debian package time); no network.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${ROUNDS:-3}
ROUNDS_BIG=${ROUNDS_BIG:-1}
WORKERS=${WORKERS:-1}
CHUNK=${CHUNK:-$((8 << 20))} # store/gcs.DefaultChunkSize
SOURCE=${SOURCE:-file}
SINK=${SINK:-file}
RSS_BYTES=${RSS_BYTES:-$((10 << 30))}
RSS_FILES=${RSS_FILES:-100}
RSS_PLAIN=${RSS_PLAIN:-0}
GiB=$((1 << 30))

# shellcheck source=bench/lib.sh
source bench/lib.sh
start_fake_gcs

# transfer CLIENT FILES BYTES: prints "UP DOWN" in seconds.
transfer() {
	local line
	line=$(bin/gcsbench transfer -client "$1" -files "$2" -total "$3" -workers "$WORKERS" -chunk "$CHUNK" -source "$SOURCE" -sink "$SINK")
	echo "  $line" >&2
	awk '{for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } print v["up"], v["down"]}' <<<"$line"
}

# compare FILES BYTES ROUNDS
compare() {
	local files=$1 bytes=$2 rounds=$3 r first second c t out
	local -A up=([sluice]=0 [plain]=0) down=([sluice]=0 [plain]=0)
	for r in $(seq 1 "$rounds"); do
		first=plain second=sluice
		if ((r % 2 == 0)); then first=sluice second=plain; fi
		for c in $first $second; do
			out=$(transfer "$c" "$files" "$bytes")
			read -r -a t <<<"$out"
			up[$c]=$(awk -v a="${up[$c]}" -v b="${t[0]}" 'BEGIN { print (a == 0 || b < a) ? b : a }')
			down[$c]=$(awk -v a="${down[$c]}" -v b="${t[1]}" 'BEGIN { print (a == 0 || b < a) ? b : a }')
		done
	done
	awk -v files="$files" -v bytes="$bytes" -v rounds="$rounds" -v w="$WORKERS" -v src="$SOURCE" -v sink="$SINK" \
		-v su="${up[sluice]}" -v pu="${up[plain]}" -v sd="${down[sluice]}" -v pd="${down[plain]}" 'BEGIN {
		mib = bytes / 1048576
		printf "gcs %d file%s x %.1f MiB (best of %d, %d at once, from %s to %s): upload sluice %.0f MiB/s, plain %.0f MiB/s, ratio %.2f; download sluice %.0f MiB/s, plain %.0f MiB/s, ratio %.2f (target >= 0.90)\n",
			files, files == 1 ? "" : "s", mib / files, rounds, w, src, sink, mib / su, mib / pu, pu / su, mib / sd, mib / pd, pd / sd
	}'
}

ratio() {
	compare 100 "$GiB" "$ROUNDS"
	compare 1 "$GiB" "$ROUNDS_BIG"
}

# rss CLIENT: peak RSS of one transfer process moving RSS_BYTES.
rss1() {
	local out kib
	out=$( { /usr/bin/time -f 'rss=%M' bin/gcsbench transfer -client "$1" -files "$RSS_FILES" -total "$RSS_BYTES" -workers "$WORKERS" -chunk "$CHUNK" -source "$SOURCE" -sink "$SINK"; } 2>&1)
	echo "  $out" | tr '\n' ' ' >&2
	echo >&2
	kib=$(grep -o 'rss=[0-9]*' <<<"$out" | cut -d= -f2)
	awk -v c="$1" -v kib="$kib" -v files="$RSS_FILES" -v bytes="$RSS_BYTES" -v line="$out" 'BEGIN {
		split(line, f, " "); for (i in f) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
		printf "gcs rss: %s moved %.1f GiB up and down as %d files (up %.0fs, down %.0fs): peak RSS %d MiB%s\n",
			c, bytes / 1073741824, files, v["up"], v["down"], kib / 1024, c == "sluice" ? " (target <= 100 MiB)" : ""
	}'
}

rss() {
	rss1 sluice
	if [ "$RSS_PLAIN" = 1 ]; then rss1 plain; fi
}

if [ $# -eq 0 ]; then set -- ratio rss; fi
for b in "$@"; do
	case $b in
	ratio | rss) "$b" ;;
	*)
		echo "unknown benchmark $b: use ratio or rss" >&2
		exit 2
		;;
	esac
done
