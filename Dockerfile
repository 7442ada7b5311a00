# syntax=docker/dockerfile:1
# Multi-stage build: a static relay (and mock upstream) on a distroless base.
# The patch release go.mod asks for: the image's toolchain is used as is.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/relay ./cmd/relay && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/mockllm ./cmd/mockllm && \
    mkdir -p /out/data/spool

FROM gcr.io/distroless/static-debian12:nonroot
WORKDIR /app
COPY --from=build /out/relay /out/mockllm /app/
COPY configs/ /app/configs/
# Spool files (and the WAL) live here; mount a volume to keep them across
# restarts. Owned by nonroot: a new named volume takes the ownership of the
# directory it is mounted on, so the relay can write its spool there.
COPY --from=build --chown=nonroot:nonroot /out/data /app/data
VOLUME ["/app/data"]
EXPOSE 8080
# In a container the listener must take every interface (the shipped
# config says loopback); publish the port to the host's loopback unless the
# config's relay keys are your own.
ENV RELAY_SERVER__HOST=0.0.0.0
USER nonroot:nonroot
# The image has no shell or curl: the relay asks its own /readyz (503 while
# it drains). A listener on another port or with TLS:
# override with relay health -url https://127.0.0.1:PORT/readyz -insecure.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/app/relay", "health"]
ENTRYPOINT ["/app/relay"]
CMD ["-config", "/app/configs/config.yaml"]
