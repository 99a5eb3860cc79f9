# syntax=docker/dockerfile:1
#
# moat container image.
#
#   docker build --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) -t moat .
#
# FIPS 140-3 variant: build against a frozen Go Cryptographic Module. Such a
# binary runs in FIPS mode by default (the go command makes GODEBUG=fips140=on
# its default); run it with GODEBUG=fips140=only to also make non-approved
# algorithms fail:
#
#   docker build --build-arg GOFIPS140=v1.0.0 -t moat:fips .
#
# The default (GOFIPS140=off) builds the ordinary image, unchanged. `moat
# version` and the moat_fips140_enabled gauge say which one runs.
#
# Build stage: the Go toolchain pinned by go.mod (toolchain go1.26.11), a static binary
# (CGO_ENABLED=0), reproducible paths (-trimpath), version and commit stamped
# into cmd.Version / cmd.Commit.
# Final stage: distroless static (CA certificates, /etc/passwd with the
# "nonroot" user 65532, no shell, no package manager).
#
# scripts/image-test.sh builds this file unmodified with buildah and runs it.

# The build stage runs on the builder's platform and cross-compiles for the
# target one (docker buildx build --platform linux/amd64,linux/arm64 ...).
FROM --platform=$BUILDPLATFORM golang:1.26.11-bookworm AS build

# Module downloads go through GOPROXY; override it (or pass GOFLAGS) with
# --build-arg for a mirror or an air-gapped proxy.
# (Build args are in the environment of every RUN below.)
ARG GOPROXY=https://proxy.golang.org,direct
ARG GOFLAGS=
ENV CGO_ENABLED=0 \
    GOTOOLCHAIN=local

WORKDIR /src

# Dependencies first, so that the layer is reused while only sources change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .

ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
# GOFIPS140: off, or a frozen module version such as v1.0.0 (see above).
ARG GOFIPS140=off
RUN GOFIPS140=${GOFIPS140} GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/moat-proxy/moat/cmd.Version=${VERSION} -X github.com/moat-proxy/moat/cmd.Commit=${COMMIT}" \
      -o /out/moat .

FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="moat" \
      org.opencontainers.image.description="Sidecar TLS termination proxy" \
      org.opencontainers.image.source="https://github.com/moat-proxy/moat" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"

COPY --from=build /out/moat /moat

USER 65532:65532
# Default TLS listener and status (health, readiness, metrics) ports used by
# the Helm chart; moat itself listens wherever --listen and --status say.
EXPOSE 8443 9090
ENTRYPOINT ["/moat"]
