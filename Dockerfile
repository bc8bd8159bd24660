# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# docker build --build-arg VERSION=$(scripts/version.sh) -t canaryd . (the
# version `canaryd version` and /healthz report; the image has no git).
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/canaryd ./cmd/canaryd \
 && mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/canaryd /usr/local/bin/canaryd
# The state file lives in a folder the nonroot user (65532) can write.
COPY --from=build --chown=nonroot:nonroot /out/state /var/lib/canaryd
WORKDIR /var/lib/canaryd
ENV CANARY_STATE_FILE=/var/lib/canaryd/canaryd-state.json
USER nonroot:nonroot
EXPOSE 8080 8000
ENTRYPOINT ["/usr/local/bin/canaryd"]
