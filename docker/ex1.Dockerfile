# Single stage: the fat builder image. It builds the app exactly as `cargo xtask dist` does on the
# host, into /out: the static binary plus the few files a scratch image needs (CA bundle,
# passwd/group for the non-root user). `cargo xtask image --strategy single` ships it as is;
# `--strategy handoff` copies /out to dist/ and builds ex2.Dockerfile from there.
# Build context: go-app/ with its glide vendor/. Every ARG without a default comes from the xtask
# (modules `gobuild` and `dockerbuild`): `cargo xtask image --dry-run` shows the full command.
ARG BUILDER_IMAGE=golang:1.19-bookworm
FROM ${BUILDER_IMAGE}
# Ours from the first step: a build stopped halfway leaves images that `clean` can recognise.
LABEL dev.go-docker-prod.project=go-docker-prod
ARG GO111MODULE CGO_ENABLED GOOS GOFLAGS APP_UID GOCACHE=/tmp/go-build
WORKDIR /go/src/go-docker-prod
# What a scratch image needs besides the binary: the CA bundle and the non-root user. The build
# itself runs as that user too (Go's build cache in GOCACHE, which the ARG line sets).
RUN mkdir -p /out/etc/ssl/certs \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && echo "app:x:$APP_UID:$APP_UID:app:/:/sbin/nologin" > /out/etc/passwd \
 && echo "app:x:$APP_UID:" > /out/etc/group \
 && chown "$APP_UID:$APP_UID" /out
USER ${APP_UID}:${APP_UID}
EXPOSE 8080
ENTRYPOINT ["/out/main"]
# Dependencies first: this layer (and Go's build cache inside it) survives edits to the app.
COPY vendor/ vendor/
RUN go build ./vendor/... os/signal
ARG LDFLAGS
# The app: an edit reruns only the steps from here on.
COPY . .
RUN go build -ldflags "$LDFLAGS" -o /out/main .
# Labels in one instruction (the legacy builder makes a step of every `--label`): the keys are the
# xtask's (module `project`), the values its build args. Declared after the last RUN: a new commit
# changes them, and must not invalidate the build steps.
ARG VERSION REVISION CREATED SOURCE CHECKOUT
LABEL org.opencontainers.image.title=go-docker-prod \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.created=$CREATED \
      org.opencontainers.image.source=$SOURCE \
      dev.go-docker-prod.project=go-docker-prod \
      dev.go-docker-prod.checkout=$CHECKOUT \
      dev.go-docker-prod.stage=builder
