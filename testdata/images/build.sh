#!/usr/bin/env bash
# Builds the container images that the tests use, locally, without a registry:
#
#   sluice-test/busybox:latest   FROM scratch: a static busybox (Debian's
#                                busybox-static), its applet links, /tmp, /etc.
#
# Idempotent: an image whose sluice.content-hash label matches the inputs
# (this script, the Dockerfile, the busybox binary) is left alone.
#
# Environment: BUSYBOX (default /bin/busybox, must be statically linked),
# DOCKER (default docker); the daemon is whatever the docker CLI talks to.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
docker=${DOCKER:-docker}
busybox=${BUSYBOX:-/bin/busybox}
image=sluice-test/busybox:latest

if [[ ! -x $busybox ]]; then
	echo "build.sh: $busybox not found; install Debian's busybox-static" >&2
	exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
	echo "build.sh: $busybox is dynamically linked; install Debian's busybox-static" >&2
	exit 1
fi

hash=$(cat "${BASH_SOURCE[0]}" "$here/busybox/Dockerfile" "$busybox" | sha256sum | cut -d' ' -f1)
have=$("$docker" image inspect --format '{{ index .Config.Labels "sluice.content-hash" }}' "$image" 2>/dev/null || true)
if [[ $have == "$hash" ]]; then
	echo "build.sh: $image is up to date (${hash:0:12})"
	exit 0
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
install -m 0755 "$busybox" "$root/bin/busybox"
# One absolute link per applet, where busybox itself would install it.
while read -r applet; do
	[[ $applet == */* ]] || continue # linuxrc and the like stay out
	[[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done < <("$root/bin/busybox" --list-full)
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
cp "$here/busybox/Dockerfile" "$ctx/Dockerfile"

# The classic builder needs nothing but the daemon; BuildKit is used when the
# CLI has it (docker buildx), and works the same on FROM scratch.
if ! "$docker" buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi
if ! log=$("$docker" build --quiet --label "sluice.content-hash=$hash" --tag "$image" "$ctx" 2>&1); then
	echo "build.sh: docker build $image failed:" >&2
	echo "$log" >&2
	exit 1
fi
out=$("$docker" run --rm "$image" sh -c 'echo ok')
if [[ $out != ok ]]; then
	echo "build.sh: $image built but does not run /bin/sh (got: $out)" >&2
	exit 1
fi
echo "build.sh: built $image (${hash:0:12})"
