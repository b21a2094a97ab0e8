# Shared by the bench scripts: source it after `cd` to the repository.

# start_fake_gcs: builds bench/gcsbench and starts it as fake-gcs-server on
# 127.0.0.1, in a process of its own, with its filesystem backend under a new
# temp directory $work (removed at exit, with the server); sets url and
# exports STORAGE_EMULATOR_HOST.
start_fake_gcs() {
	go build -o bin/gcsbench ./bench/gcsbench
	work=$(mktemp -d)
	mkdir -p "$work/gcs"
	mkfifo "$work/in"
	# The server serves until its stdin closes: fd 3 holds the fifo open.
	bin/gcsbench serve -root "$work/gcs" <"$work/in" >"$work/url" 2>"$work/server.err" &
	server=$!
	exec 3>"$work/in"
	trap stop_fake_gcs EXIT
	for _ in $(seq 1 300); do
		[ -s "$work/url" ] && break
		kill -0 "$server" 2>/dev/null || { cat "$work/server.err" >&2; exit 1; }
		sleep 0.1
	done
	url=$(head -n1 "$work/url")
	[ -n "$url" ] || { echo "fake-gcs-server printed no address" >&2; exit 1; }
	export STORAGE_EMULATOR_HOST=${url#http://}
}

stop_fake_gcs() {
	exec 3>&- || true
	wait "$server" 2>/dev/null || true
	rm -rf "$work"
}

# chain_yaml N IMAGE: prints a pipeline of N busybox steps, each passing a
# small file to the next (output -> input edge).
chain_yaml() {
	local n=$1 image=$2 i
	echo "- step: {name: first, image: \"$image\", command: \"echo 0 > /valohai/outputs/x.txt\"}"
	echo "- step: {name: next, image: \"$image\", command: \"cat /valohai/inputs/in/x.txt > /valohai/outputs/x.txt; echo 1 >> /valohai/outputs/x.txt\", inputs: [{name: in}]}"
	echo "- pipeline:"
	echo "    name: chain"
	echo "    nodes:"
	echo "      - {name: s1, type: execution, step: first}"
	for i in $(seq 2 "$n"); do echo "      - {name: s$i, type: execution, step: next}"; done
	echo "    edges:"
	for i in $(seq 2 "$n"); do echo "      - [s$((i - 1)).output.x.txt, s$i.input.in]"; done
}

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
