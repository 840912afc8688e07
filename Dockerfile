# syntax=docker/dockerfile:1
#
# Two images from one build:
#   docker build -t mcp-browser-proxy --build-arg VERSION=$(git describe --tags --always --dirty) .
#   docker build -t mcp-browser-proxy:managed --target managed .
# The default (last) target is the static binary on distroless; `managed`
# adds Debian's Chromium for the proxy's own browsers.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .git is not in the context (.dockerignore), so the version comes from the
# build argument; `mcp-browser-proxy version` prints it.
ARG VERSION=""
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.versionOverride=${VERSION}" \
      -o /out/mcp-browser-proxy ./cmd/mcp-browser-proxy \
 && mkdir -p /out/data

# managed: Debian's Chromium for --managed-browsers (run it as
# `docker run ... mcp-browser-proxy:managed serve --managed-browsers`).
FROM debian:bookworm-slim AS managed
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-liberation ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin mbp \
 && mkdir -p /data && chown mbp:mbp /data
COPY --from=build /out/mcp-browser-proxy /usr/local/bin/mcp-browser-proxy
ENV MBP_ADDR=0.0.0.0:3000 \
    MBP_DATA_DIR=/data
VOLUME /data
EXPOSE 3000
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/mcp-browser-proxy", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mcp-browser-proxy"]
CMD ["serve"]

# The default image: the static binary alone, as distroless's nonroot user.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /out/mcp-browser-proxy /usr/local/bin/mcp-browser-proxy
COPY --from=build --chown=65532:65532 /out/data /data
ENV MBP_ADDR=0.0.0.0:3000 \
    MBP_DATA_DIR=/data
VOLUME /data
EXPOSE 3000
USER 65532:65532
# No shell in distroless: the binary probes its own /health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/mcp-browser-proxy", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mcp-browser-proxy"]
CMD ["serve"]
