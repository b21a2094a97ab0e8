#!/usr/bin/env bash
# Makes the Go builder image that the root Dockerfile's build stage starts
# FROM, locally, for a machine that reaches no container registry. Users with
# a registry never run this: `docker build .` pulls the real image.
#
# The image gets the name of the Dockerfile's `ARG GO_IMAGE=` default (say
# golang:1.26-bookworm) and holds just what that build stage uses:
#   /usr/local/go        this machine's Go toolchain (`go env GOROOT`), less
#                        its test/ and api/ trees
#   /bin/busybox         Debian's busybox-static, with links for /bin/sh & co.
#   /etc/ssl/certs/ca-certificates.crt   this machine's CA bundle, so that
#                        module downloads (GOPROXY) and the final image's
#                        HTTPS trust what this machine trusts
#   /etc/passwd, /etc/group, /tmp (1777), /root, /go (GOPATH)
# made with `docker import` of that tree: no registry, no build context.
#
# An image of that name that this script did not make (one pulled from a
# registry) is left alone. An image it made is rebuilt only when its inputs
# change (the sluice.content-hash label: this script, the Go version, busybox,
# the CA bundle).
#
# Environment: GO (default go), BUSYBOX (default /bin/busybox, static),
# CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt), GO_IMAGE (default:
# the Dockerfile's), DOCKER (default docker), FORCE=1 (rebuild anyway).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root_dir=$(cd "$here/../../.." && pwd)
docker=${DOCKER:-docker}
gocmd=${GO:-go}
busybox=${BUSYBOX:-/bin/busybox}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

say() { echo "go/build.sh: $*"; }
die() { echo "go/build.sh: error: $*" >&2; exit 1; }

image=${GO_IMAGE:-$(sed -n 's/^ARG GO_IMAGE=//p' "$root_dir/Dockerfile" | head -n 1)}
[[ -n $image ]] || die "no 'ARG GO_IMAGE=' line in $root_dir/Dockerfile; set GO_IMAGE"

# An image of that name from elsewhere (a registry) is the real one: keep it.
have=
if "$docker" image inspect "$image" >/dev/null 2>&1; then
	have=$("$docker" image inspect --format '{{ index .Config.Labels "sluice.content-hash" }}' "$image")
	if [[ -z $have || $have == "<no value>" ]]; then
		say "$image is already there and was not made here (pulled?); using it as it is"
		exit 0
	fi
fi

command -v "$gocmd" >/dev/null || die "$gocmd not found"
goroot=$("$gocmd" env GOROOT)
goversion=$("$gocmd" env GOVERSION)
[[ -x $goroot/bin/go ]] || die "no Go toolchain in $goroot"
[[ -x $busybox ]] || die "$busybox not found; install Debian's busybox-static"
if ldd "$busybox" >/dev/null 2>&1; then
	die "$busybox is dynamically linked; install Debian's busybox-static"
fi
[[ -s $ca_bundle ]] || die "$ca_bundle not found; install Debian's ca-certificates"

# The toolchain must be the release the tag names (golang:1.26-... wants a go1.26.x).
want=$(sed -n 's/^golang:\([0-9][0-9.]*\).*/\1/p' <<<"$image")
if [[ -n $want && $goversion != "go$want" && $goversion != go$want.* ]]; then
	die "$image names Go $want but $gocmd is $goversion"
fi

hash=$(cat "${BASH_SOURCE[0]}" "$goroot/VERSION" "$busybox" "$ca_bundle" <(echo "$goversion") |
	sha256sum | cut -d' ' -f1)
if [[ $have == "$hash" && ${FORCE:-} != 1 ]]; then
	say "$image is up to date (${hash:0:12})"
	exit 0
fi

t0=$SECONDS
stage=$(mktemp -d "${TMPDIR:-/tmp}/sluice-goimage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
r=$stage/rootfs
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/local,etc/ssl/certs,root,tmp,go/bin,go/src}
chmod 1777 "$r/tmp"
chmod 0700 "$r/root"
chmod -R 1777 "$r/go" # as in the official image: any user may build

# The toolchain: hard links where the staging directory shares the file
# system with GOROOT, copies otherwise.
mkdir -p "$r/usr/local/go"
copy_goroot() {
	(cd "$goroot" && find . -mindepth 1 -maxdepth 1 ! -name test ! -name api -print0 |
		xargs -0 cp -a "$@" -t "$r/usr/local/go")
}
if ! copy_goroot -l 2>/dev/null; then
	rm -rf "$r/usr/local/go" && mkdir -p "$r/usr/local/go"
	copy_goroot
fi

install -m 0755 "$busybox" "$r/bin/busybox"
while read -r applet; do
	[[ $applet == */* ]] || continue
	[[ -e $r/$applet ]] || ln -s /bin/busybox "$r/$applet"
done < <("$busybox" --list-full)
install -m 0644 "$ca_bundle" "$r/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"

# The same configuration as Docker Hub's golang images, where the build stage
# could notice: PATH, GOPATH, GOTOOLCHAIN=local, WORKDIR /go.
say "importing $goversion from $goroot as $image"
tar -C "$r" --numeric-owner --owner=0 --group=0 -c . |
	"$docker" import \
		--change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV GOPATH=/go' \
		--change 'ENV GOTOOLCHAIN=local' \
		--change "ENV GOLANG_VERSION=${goversion#go}" \
		--change 'WORKDIR /go' \
		--change 'CMD ["/bin/sh"]' \
		--change "LABEL sluice.content-hash=$hash" \
		--message "sluice: local Go builder ($goversion, busybox), testdata/images/go/build.sh" \
		- "$image" >/dev/null

out=$("$docker" run --rm "$image" sh -c 'go version && test -s /etc/ssl/certs/ca-certificates.crt && echo ok')
[[ $out == *"$goversion"*ok ]] || die "$image was imported but does not run go (got: $out)"
say "built $image ($goversion, ${hash:0:12}) in $((SECONDS - t0))s"
