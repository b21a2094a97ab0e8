#!/usr/bin/env bash
# Times act (nektos/act, GitHub Actions run locally on Docker), the peer, on
# the same chain as `bench/run.sh chain`, and runs that benchmark in the same
# invocation so both figures come from the same machine state:
#   a. one job, 20 steps `uses: docker://IMAGE` (one container per step), each
#      appending a line to a file in the workspace; act's default mode (the
#      workspace is copied into a volume) and -b (host dir bind-mounted);
#   a'. 20 jobs chained with `needs:`, one `run:` step each in its own job
#      container, the file passed through the bind-mounted workspace (-b);
#   b. 20 jobs passing the file with actions/upload-artifact: skipped, it
#      cannot run offline (see bench/README.md).
# Fully offline: no pulls (--pull=false, local images only), no action
# downloads (--action-offline-mode, docker:// steps only), no cache server,
# no version/notice check (ACT_DISABLE_VERSION_CHECK=1).
# Usage: bash bench/act.sh        Needs Docker, Go (to install act), bc.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
IMAGE=sluice-test/busybox:latest
ACT_VERSION=0.2.89
n=20

act=$(go env GOPATH)/bin/act
if [[ ! -x $act ]] || [[ $("$act" --version) != "act version $ACT_VERSION" ]]; then
	go install "github.com/nektos/act@v$ACT_VERSION"
fi
command -v bc >/dev/null || { echo "bench: needs bc (apt-get install bc)" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null 2>&1 || bash testdata/images/build.sh

work=$(mktemp -d)
toolcache_existed=$(docker volume inspect act-toolcache >/dev/null 2>&1 && echo y || echo n)
cleanup() {
	rm -rf "$work"
	# act leaves its tool-cache volume behind; drop it if this run made it.
	[[ $toolcache_existed == y ]] || docker volume rm act-toolcache >/dev/null 2>&1 || true
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

export ACT_DISABLE_VERSION_CHECK=1 # else act asks a web service for notices
act_flags=(push --pull=false --action-offline-mode --no-cache-server
	--container-daemon-socket - -P "ubuntu-latest=$IMAGE")
echo "act: $("$act" --version): act ${act_flags[*]} [-b]" >&2

# repo NAME: a fresh git repo (act wants one) at $work/NAME with the workflow
# read from stdin.
repo() {
	local dir=$work/$1
	mkdir -p "$dir/.github/workflows"
	cat >"$dir/.github/workflows/chain.yml"
	echo "$1" >"$dir/README"
	git -C "$dir" init -q
	git -C "$dir" add -A
	git -C "$dir" -c user.name=bench -c user.email=bench@localhost commit -qm bench
}

# steps_workflow: one job, n docker:// steps; step i appends i to x.txt and
# the last one checks the file holds 0..n-1.
steps_workflow() {
	echo "on: push"
	echo "jobs:"
	echo "  chain:"
	echo "    runs-on: ubuntu-latest"
	echo "    steps:"
	local i cmd
	for i in $(seq 0 $((n - 1))); do
		if ((i == 0)); then cmd='echo 0 > x.txt'; else cmd="cat x.txt > /dev/null; echo $i >> x.txt"; fi
		((i < n - 1)) || cmd="$cmd; seq 0 $((n - 1)) | diff - x.txt"
		echo "      - uses: docker://$IMAGE"
		echo "        with: {entrypoint: /bin/sh, args: '-c \"$cmd\"'}"
	done
}

# jobs_workflow: n jobs chained with needs:, one run: step each.
jobs_workflow() {
	echo "on: push"
	echo "defaults: {run: {shell: sh}}"
	echo "jobs:"
	local i cmd
	for i in $(seq 0 $((n - 1))); do
		if ((i == 0)); then cmd='echo 0 > x.txt'; else cmd="cat x.txt > /dev/null; echo $i >> x.txt"; fi
		((i < n - 1)) || cmd="$cmd; seq 0 $((n - 1)) | diff - x.txt"
		echo "  j$i:"
		echo "    runs-on: ubuntu-latest"
		((i == 0)) || echo "    needs: j$((i - 1))"
		echo "    steps:"
		echo "      - run: '$cmd'"
	done
}

# run_act NAME LABEL [FLAGS...]: times act in $work/NAME and prints one line.
run_act() {
	local name=$1 label=$2 t0 s
	shift 2
	t0=$(now)
	if ! (cd "$work/$name" && "$act" "${act_flags[@]}" "$@" </dev/null >"$work/$name.log" 2>&1); then
		tail -n 30 "$work/$name.log" >&2
		echo "bench: act failed ($label)" >&2
		exit 1
	fi
	s=$(elapsed "$t0")
	printf 'act: %s: %.2fs\n' "$label" "$s"
}

# The host copy of x.txt exists only with -b; check it there too.
check_host() {
	seq 0 $((n - 1)) | diff - "$work/$1/x.txt" >/dev/null || { echo "bench: $1: x.txt is not 0..$((n - 1))" >&2; exit 1; }
}

steps_workflow | repo steps
steps_workflow | repo steps-b
jobs_workflow | repo jobs-b

bash bench/run.sh chain
run_act steps "chain of $n docker:// steps (workspace copied)"
run_act steps-b "chain of $n docker:// steps (-b, workspace bound)" -b
check_host steps-b
run_act jobs-b "chain of $n jobs with needs:, one run: step each (-b)" -b
check_host jobs-b
echo "act: $n jobs passing the file with actions/upload-artifact: skipped, needs the action from GitHub and node in the job image (offline: neither)"
