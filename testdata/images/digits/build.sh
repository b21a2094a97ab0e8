#!/usr/bin/env bash
# Builds sluice-test/digits:latest, the image of examples/digits, without a
# container registry: Debian bookworm (debootstrap, minbase) with Debian's
# python3, python3-numpy and python3-sklearn, imported with `docker import`.
# With a registry, examples/digits/Dockerfile builds the equivalent image.
#
# Idempotent: an image whose sluice.content-hash label is the hash of this
# script is left alone (edit the script, or FORCE=1, to rebuild).
#
# Run as root (debootstrap and chroot need it); no prompts, no standard input.
# Environment:
#   MIRROR   Debian mirror (default: the one this machine's apt uses)
#   SUITE    default bookworm
#   IMAGE    default sluice-test/digits:latest
#   DOCKER   default docker; the daemon is whatever the docker CLI talks to
#   WORKDIR  where the root file system is staged (default ${TMPDIR:-/var/tmp})
#   DEB_CACHE where downloaded .deb files are kept for the next build
#            (default /var/cache/sluice-digits; empty: none)
#   FORCE=1  rebuild even when the image is up to date
set -euo pipefail

export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C LANG=C

docker=${DOCKER:-docker}
image=${IMAGE:-sluice-test/digits:latest}
suite=${SUITE:-bookworm}
packages=(python3 python3-numpy python3-sklearn)

say() { echo "digits/build.sh: $*"; }
die() { echo "digits/build.sh: error: $*" >&2; exit 1; }

t0=$(date +%s)
lap=$t0
# timing LABEL: prints how long the phase since the previous call took.
timing() {
	local now
	now=$(date +%s)
	say "$1 took $((now - lap))s"
	lap=$now
}

[[ $(id -u) == 0 ]] || die "run as root (debootstrap and chroot need it)"

hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
have=$("$docker" image inspect --format '{{ index .Config.Labels "sluice.content-hash" }}' "$image" 2>/dev/null || true)
old_id=$("$docker" image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)
if [[ $have == "$hash" && ${FORCE:-} != 1 ]]; then
	say "$image is up to date (${hash:0:12})"
	exit 0
fi

# --- the mirror ------------------------------------------------------------------
# The first Debian archive (not the security one) that apt on this machine
# uses, from deb822 .sources files (URIs:) or one-line sources.list entries.
host_mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		# deb [options] URI suite components...
		awk '$1 == "deb" { u = $2; if (u ~ /^\[/) { for (i = 2; i <= NF; i++) if ($i ~ /\]$/) { u = $(i + 1); break } } print u }' "$f"
	done
}
mirror=${MIRROR:-}
if [[ -z $mirror ]]; then
	mirror=$(host_mirror | grep -E '/debian/?$' | grep -v -- '-security' | head -n 1 || true)
	mirror=${mirror:-http://deb.debian.org/debian}
fi
mirror=${mirror%/}
security=${mirror%/debian}/debian-security
say "building $image (${hash:0:12}) from $suite at $mirror"

# --- tools -----------------------------------------------------------------------
if ! command -v debootstrap >/dev/null; then
	say "installing debootstrap"
	apt-get update -q -o Acquire::Retries=3
	apt-get install -y -q --no-install-recommends -o Acquire::Retries=3 debootstrap
	timing "installing debootstrap"
fi
cache=${DEB_CACHE-/var/cache/sluice-digits}
cacheopt=()
if [[ -n $cache ]]; then
	mkdir -p "$cache"
	cache=$(cd "$cache" && pwd)
	cacheopt=(--cache-dir="$cache")
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
keyopt=()
if [[ -f $keyring ]]; then
	keyopt=(--keyring="$keyring")
fi

# --- staging and cleanup ---------------------------------------------------------
work=$(mktemp -d "${WORKDIR:-${TMPDIR:-/var/tmp}}/sluice-digits.XXXXXX")
root=$work/rootfs
# unmount_all: unmounts whatever is still mounted under the root file system
# (debootstrap mounts /proc and /sys there and may leave them after a failure),
# deepest first.
unmount_all() {
	local m
	[[ -d $root ]] || return 0
	while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done < <(awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}
cleanup() {
	unmount_all
	# --one-file-system: never follow into a mount that could not be undone.
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- bootstrap -------------------------------------------------------------------
say "debootstrap --variant=minbase $suite"
if ! debootstrap --variant=minbase "${keyopt[@]}" "${cacheopt[@]}" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
	tail -n 40 "$work/debootstrap.log" >&2
	[[ -f $root/debootstrap/debootstrap.log ]] && tail -n 40 "$root/debootstrap/debootstrap.log" >&2
	die "debootstrap failed"
fi
unmount_all
timing "debootstrap"

# --- packages --------------------------------------------------------------------
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
# As Debian's slim images do: no documentation or translations, no daemons
# started by maintainer scripts, no recommends.
cat >"$root/etc/dpkg/dpkg.cfg.d/90sluice-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
cat >"$root/etc/apt/apt.conf.d/90sluice" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
EOF
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C HOME=/root "$@"; }

# Debian bookworm's python3-scipy depends on python3-pythran, a compiler for
# building scipy that it does not use at run time; it brings g++, boost and
# the Python headers (about 500 MB). An empty package that provides
# python3-pythran, installed first, satisfies that dependency instead.
stub=$root/tmp/pythran-stub
mkdir -p "$stub/DEBIAN"
cat >"$stub/DEBIAN/control" <<'EOF'
Package: sluice-pythran-stub
Version: 1.0
Architecture: all
Maintainer: sluice <sluice@localhost>
Provides: python3-pythran
Description: stands in for python3-pythran, which python3-scipy needs only to build
EOF
say "apt-get install ${packages[*]}"
if [[ -n $cache ]]; then
	find "$cache" -maxdepth 1 -name '*.deb' -exec cp -t "$root/var/cache/apt/archives/" {} +
fi
if ! {
	in_root dpkg-deb --build /tmp/pythran-stub /tmp/pythran-stub.deb &&
		in_root dpkg -i /tmp/pythran-stub.deb &&
		in_root apt-get update -q
} >"$work/apt.log" 2>&1 </dev/null; then
	tail -n 40 "$work/apt.log" >&2
	die "apt-get update in the chroot failed"
fi
timing "apt-get update"
# upgrade: the base system from debootstrap, to bookworm-updates and -security.
if ! { in_root apt-get upgrade -y -q && in_root apt-get install -y -q "${packages[@]}"; } >>"$work/apt.log" 2>&1 </dev/null; then
	tail -n 40 "$work/apt.log" >&2
	die "installing ${packages[*]} in the chroot failed"
fi
grep -E '^(Need to get|[0-9]+ upgraded)' "$work/apt.log" | sed 's/^/digits\/build.sh: apt: /' || true
timing "apt-get install"

if [[ -n $cache ]]; then
	find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n -t "$cache/" {} +
fi
in_root apt-get clean
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
	"$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/var/log/bootstrap.log \
	"$root"/tmp/* "$root"/root/.cache
# The container runtime provides /dev, /proc and /sys.
rm -rf "${root:?}"/dev/* "${root:?}"/proc/* "${root:?}"/sys/*
# shellcheck disable=SC2016 # dpkg-query expands these, not the shell
versions=$(in_root dpkg-query -W -f='${Package}=${Version} ' "${packages[@]}" python3-scipy)
say "installed: $versions"

# --- import ----------------------------------------------------------------------
say "docker import"
id=$(tar --numeric-owner -C "$root" -c . | "$docker" import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV LANG=C.UTF-8' \
	--change 'ENV PYTHONUNBUFFERED=1' \
	--change 'ENV PYTHONDONTWRITEBYTECODE=1' \
	--change "LABEL sluice.content-hash=$hash" \
	--change "LABEL org.opencontainers.image.description=\"Debian $suite, python3, numpy, scikit-learn (examples/digits)\"" \
	--change 'CMD ["python3"]' \
	--message "testdata/images/digits/build.sh ${hash:0:12}" \
	- "$image")
timing "docker import"
# The image this one replaces, now untagged, would only take up space.
if [[ -n $old_id && $old_id != "$id" ]]; then
	"$docker" image rm "$old_id" >/dev/null 2>&1 || true
fi

out=$("$docker" run --rm --entrypoint= "$image" /bin/sh -c \
	'python3 -c "import sys, numpy, sklearn; print(sys.version.split()[0], numpy.__version__, sklearn.__version__)"')
say "python numpy scikit-learn: $out"
size=$("$docker" image inspect --format '{{ .Size }}' "$image")
say "built $image ${id#sha256:} ($((size / 1024 / 1024)) MiB) in $(($(date +%s) - t0))s"
