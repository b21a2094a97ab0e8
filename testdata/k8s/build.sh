#!/usr/bin/env bash
# Builds the Kubernetes control plane that internal/kubetest starts on
# 127.0.0.1: kube-apiserver, kube-controller-manager and kube-scheduler from
# k8s.io/kubernetes, etcd, and kwok (nodes whose pods move through their phases
# without running anything). Everything comes from the Go module proxy; no
# release download, no registry.
#
# The binaries land in ${SLUICE_K8S_CACHE:-$HOME/.cache/sluice/k8s}/<version>/,
# outside the checkout, with a stamp naming what was built: a second run with
# the same recipe does nothing. Cold, on 2 cores, it takes 17 to 23 minutes
# (most of it compiling kubernetes; each link needs up to 3 GB of memory);
# warm, a few milliseconds.
#
# Why a wrapper module: k8s.io/kubernetes's go.mod points every staging module
# (k8s.io/api, k8s.io/client-go, ...) at ./staging/src/..., so a plain
# `go install k8s.io/kubernetes/cmd/...@v1.37.2` refuses it. The wrapper
# requires k8s.io/kubernetes and replaces each of those staging modules with
# its published release (v0.<minor>.<patch>).
#
# Knobs: SLUICE_K8S_CACHE (the cache root), SLUICE_K8S_BUILD_P (go build -p;
# by default 1 when less than 8 GB of memory is free, else Go's default).
set -euo pipefail

kube_version=v1.37.2
staging_version=v0.${kube_version#v1.} # v0.37.2
etcd_version=v3.6.17
kwok_version=v0.8.0

recipe="kubernetes $kube_version staging $staging_version etcd $etcd_version kwok $kwok_version recipe 1"
bins=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)

cache=${SLUICE_K8S_CACHE:-$HOME/.cache/sluice/k8s}/$kube_version
stamp=$cache/.stamp

say() { echo "k8s build: $*"; }
die() {
	echo "k8s build: error: $*" >&2
	exit 1
}

up_to_date() {
	[[ -f $stamp && $(<"$stamp") == "$recipe" ]] || return 1
	local b
	for b in "${bins[@]}"; do
		[[ -x $cache/$b ]] || return 1
	done
}

if up_to_date; then
	say "up to date in $cache"
	exit 0
fi

command -v go >/dev/null || die "no go on PATH"
mkdir -p "$cache"
# One build at a time: a second caller waits here, then finds the stamp.
exec 9>"$cache/.lock"
if command -v flock >/dev/null; then
	flock 9
	if up_to_date; then
		say "up to date in $cache (built meanwhile by another caller)"
		exit 0
	fi
fi

t0=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/bin
mkdir -p "$out"

export GOFLAGS="-trimpath -buildvcs=false -mod=mod"
export GOWORK=off
export CGO_ENABLED=0
p_flag=()
if [[ -n ${SLUICE_K8S_BUILD_P:-} ]]; then
	p_flag=(-p "$SLUICE_K8S_BUILD_P")
else
	avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
	if ((avail_kb < 8 * 1024 * 1024)); then
		p_flag=(-p 1)
	fi
fi
say "building into $cache (go $(go env GOVERSION), GOPROXY=$(go env GOPROXY)${p_flag[*]:+, ${p_flag[*]}})"

# --- kubernetes ---------------------------------------------------------------
kdir=$work/kubernetes
mkdir -p "$kdir"
(cd "$kdir" && go mod download -json "k8s.io/kubernetes@$kube_version" >"$work/k8s.json") ||
	die "the Go module proxy does not serve k8s.io/kubernetes@$kube_version"
kmod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' "$work/k8s.json")
[[ -f $kmod ]] || die "no go.mod for k8s.io/kubernetes@$kube_version in the module cache"

# The staging modules: those kubernetes's go.mod replaces with ./staging/src/...
# and also requires (the others, samples, are never in the build graph).
staging=$(awk '/=> \.\/staging\/src\// {print $1}' "$kmod" | sort -u)
required=$(awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// {print $1}' "$kmod" | sort -u)
staging=$(comm -12 <(echo "$staging") <(echo "$required"))
[[ -n $staging ]] || die "found no staging modules in $kmod"
{
	echo "module sluice.test/k8s-build"
	echo
	echo "go 1.26.0"
	echo
	echo "require k8s.io/kubernetes $kube_version"
	echo
	echo "replace ("
	for m in $staging; do
		echo "	$m => $m $staging_version"
	done
	echo ")"
} >"$kdir/go.mod"
say "kubernetes $kube_version with $(wc -w <<<"$staging") staging modules at $staging_version"

kv=${kube_version#v}
kldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kldflags+=" -X $pkg.gitVersion=$kube_version"
	kldflags+=" -X $pkg.gitMajor=${kv%%.*}"
	kminor=${kv#*.}
	kldflags+=" -X $pkg.gitMinor=${kminor%%.*}"
	kldflags+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000"
	kldflags+=" -X $pkg.gitTreeState=clean"
	kldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
kt0=$SECONDS
(cd "$kdir" && go build "${p_flag[@]}" -ldflags "$kldflags" -o "$out/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler) ||
	die "go build of kubernetes $kube_version failed (see above)"
say "kubernetes took $((SECONDS - kt0))s"

# --- etcd -----------------------------------------------------------------------
edir=$work/etcd
mkdir -p "$edir"
cat >"$edir/go.mod" <<EOF
module sluice.test/etcd-build

go 1.26.0

require go.etcd.io/etcd/server/v3 $etcd_version
EOF
et0=$SECONDS
(cd "$edir" && go build "${p_flag[@]}" -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3) ||
	die "go build of etcd $etcd_version failed (see above)"
say "etcd took $((SECONDS - et0))s"

# --- kwok -----------------------------------------------------------------------
wdir=$work/kwok
mkdir -p "$wdir"
cat >"$wdir/go.mod" <<EOF
module sluice.test/kwok-build

go 1.26.0

require sigs.k8s.io/kwok $kwok_version
EOF
wt0=$SECONDS
(cd "$wdir" && go build "${p_flag[@]}" \
	-ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}" \
	-o "$out/kwok" sigs.k8s.io/kwok/cmd/kwok) ||
	die "go build of kwok $kwok_version failed (see above)"
say "kwok took $((SECONDS - wt0))s"

# --- into the cache ---------------------------------------------------------------
rm -f "$stamp"
for b in "${bins[@]}"; do
	[[ -x $out/$b ]] || die "$b was not built"
	mv -f "$out/$b" "$cache/$b.new"
	mv -f "$cache/$b.new" "$cache/$b"
done
"$cache/kube-apiserver" --version
"$cache/etcd" --version | head -n 1
"$cache/kwok" --version 2>/dev/null || true
echo "$recipe" >"$stamp"
say "built in $((SECONDS - t0))s into $cache"
