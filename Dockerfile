# The sluice image: the static binary, CA certificates, /tmp and a HOME, on
# scratch. It is the image of the GitHub Action (action.yml) and the image
# behind `docker run ghcr.io/sluice-ci/sluice`.
#
#   docker build -t sluice .                          the image (the last stage)
#   docker build --target shell -t sluice:shell .     the same plus a busybox shell,
#                                                     for GitLab CI jobs (script: needs sh)
#   --build-arg VERSION=v1.2.3                        what `sluice version` prints
#   --build-arg GOPROXY=... GOSUMDB=... GOFLAGS=...   passed to the go command
#   --build-arg GO_IMAGE=...                          the Go toolchain image of the build
#
# Plain Dockerfile syntax (no RUN --mount, no COPY --chmod): the classic
# builder and BuildKit both build it. Where no registry can be reached,
# testdata/images/go/build.sh first makes a local image named like GO_IMAGE's
# default.
#
# The image runs as root: GitHub runs Docker actions as root, and sluice
# talks to the Docker daemon through its socket.

ARG GO_IMAGE=golang:1.26-bookworm

# --- build: the binary and the rest of the final tree, under /out/rootfs ---------
FROM ${GO_IMAGE} AS build
RUN set -eu; \
	r=/out/rootfs; \
	mkdir -p "$r/etc/ssl/certs" "$r/tmp" "$r/home/sluice" "$r/usr/local/bin"; \
	chmod 1777 "$r/tmp" "$r/home/sluice"; \
	cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"; \
	printf 'root:x:0:0:root:/home/sluice:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$r/etc/passwd"; \
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"

WORKDIR /src
ARG GOPROXY
ARG GOSUMDB
ARG GOFLAGS
ENV CGO_ENABLED=0
ENV GOCACHE=/root/.cache/go-build
COPY go.mod go.sum ./
RUN go mod download
# Compile the heavy dependencies in a layer of their own, which only go.mod
# and go.sum invalidate: a change to sluice's code then recompiles sluice
# alone (15-20 s instead of about 2 min on 2 cores). Names no longer in go.mod
# drop out (go list -e); this list only saves time, it decides nothing.
RUN set -eu; \
	pkgs=$(go list -e -tags disable_grpc_modules -f '{{if not .Error}}{{.ImportPath}}{{end}}' \
		cloud.google.com/go/storage \
		google.golang.org/api/option \
		github.com/docker/docker/client \
		github.com/docker/docker/pkg/stdcopy \
		github.com/google/go-github/v84/github \
		github.com/spf13/cobra \
		github.com/yuin/goldmark \
		go.yaml.in/yaml/v3 2>/dev/null); \
	if [ -n "$pkgs" ]; then go build -trimpath -tags disable_grpc_modules $pkgs; fi

COPY . .
ARG VERSION=dev
# disable_grpc_modules: sluice uses Cloud Storage's JSON API only; the tag
# leaves out the gRPC transport's dependencies (the binary: 42 MB -> 28.7 MB).
RUN go build -trimpath -tags disable_grpc_modules \
		-ldflags "-s -w -X main.buildVersion=${VERSION}" \
		-o /out/rootfs/usr/local/bin/sluice ./cmd/sluice && \
	/out/rootfs/usr/local/bin/sluice version

# --- busybox: a static shell for the shell variant -------------------------------
# Debian's busybox-static: already in the local builder image, installed from
# Debian in Docker Hub's golang:*-bookworm.
FROM ${GO_IMAGE} AS busybox
RUN set -eu; \
	if [ ! -x /bin/busybox ]; then \
		apt-get update -q && \
		apt-get install -y -q --no-install-recommends busybox-static && \
		rm -rf /var/lib/apt/lists/*; \
	fi; \
	mkdir -p /out/bin; \
	cp /bin/busybox /out/bin/busybox

# --- shell: the image plus busybox (GitLab jobs run their script with sh) -------
FROM scratch AS shell
COPY --from=build /out/rootfs/ /
COPY --from=busybox /out/bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV HOME=/home/sluice \
	PATH=/usr/local/bin:/bin
ARG VERSION=dev
LABEL org.opencontainers.image.title="sluice (with a shell)" \
	org.opencontainers.image.description="Runs a valohai.yaml pipeline in CI, compares its metrics with the target branch and gates the merge; busybox shell included" \
	org.opencontainers.image.source="https://github.com/sluice-ci/sluice" \
	org.opencontainers.image.version="${VERSION}"
CMD ["/bin/sh"]

# --- the image ---------------------------------------------------------------------
FROM scratch
COPY --from=build /out/rootfs/ /
ENV HOME=/home/sluice \
	PATH=/usr/local/bin
ARG VERSION=dev
LABEL org.opencontainers.image.title="sluice" \
	org.opencontainers.image.description="Runs a valohai.yaml pipeline in CI, compares its metrics with the target branch and gates the merge" \
	org.opencontainers.image.source="https://github.com/sluice-ci/sluice" \
	org.opencontainers.image.version="${VERSION}"
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--help"]
