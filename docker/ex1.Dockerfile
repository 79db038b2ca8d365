# Single stage: the fat builder image. It builds the app exactly as `cargo xtask dist` does on the
# host, into /out: the static binary plus the few files a scratch image needs (CA bundle,
# passwd/group for the non-root user). `cargo xtask image --strategy single` ships it as is;
# `--strategy handoff` copies /out to dist/ and builds ex2.Dockerfile from there.
# Build context: go-app/ with its glide vendor/. Every ARG without a default comes from the xtask
# (crate `xtask`, module `gobuild`): run `cargo xtask image --dry-run` to see the full command.
ARG BUILDER_IMAGE=golang:1.19-bookworm
FROM ${BUILDER_IMAGE}
ARG GO111MODULE CGO_ENABLED GOOS GOFLAGS
WORKDIR /go/src/go-docker-prod
# Dependencies first: this layer (and Go's build cache inside it) survives edits to the app.
COPY vendor/ vendor/
RUN go build ./vendor/...
COPY . .
ARG LDFLAGS APP_UID
RUN go build -ldflags "$LDFLAGS" -o /out/main . \
 && mkdir -p /out/etc/ssl/certs \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && echo "app:x:$APP_UID:$APP_UID:app:/:/sbin/nologin" > /out/etc/passwd \
 && echo "app:x:$APP_UID:" > /out/etc/group
USER ${APP_UID}:${APP_UID}
EXPOSE 8080
ENTRYPOINT ["/out/main"]
