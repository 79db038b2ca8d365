# The fat builder image: the multi-stage Dockerfile's builder stage, step for step (a unit test
# keeps them in step). It builds the app exactly as `cargo xtask dist` does on the host, into /out:
# the static binary plus the few files a scratch image needs. `--strategy single` ships it as is;
# `--strategy handoff` copies /out to dist/ and builds ex2.Dockerfile from there.
# Build context: go-app/ with its vendor/ (Glide's, or the module's). ARGs without a default come
# from the xtask.
ARG BUILDER_IMAGE=golang:1.27-bookworm
FROM ${BUILDER_IMAGE}
# Ours from the first step: a build stopped halfway leaves images that `clean` can recognise.
LABEL dev.go-docker-prod.project=go-docker-prod
ARG GO111MODULE CGO_ENABLED GOOS GOFLAGS GOPROXY GOTOOLCHAIN APP_UID PASSWD GROUP GOCACHE=/tmp/go-build
# GOPATH mode: the app sits at its import path (module mode ignores where it sits).
ARG IMPORT_PATH
WORKDIR /go/src/${IMPORT_PATH}
# What a scratch image needs besides the binary: the CA bundle and the non-root user, root-owned
# and read-only. The build itself runs as that user (Go's build cache in GOCACHE).
RUN mkdir -p /out/etc/ssl/certs \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && printf '%s\n' "$PASSWD" > /out/etc/passwd \
 && printf '%s\n' "$GROUP" > /out/etc/group \
 && chmod 0444 /out/etc/passwd /out/etc/group /out/etc/ssl/certs/ca-certificates.crt \
 && chmod 0755 /out/etc /out/etc/ssl /out/etc/ssl/certs \
 && chown "$APP_UID:$APP_UID" /out
USER ${APP_UID}:${APP_UID}
# The app's settings (port, environment, entrypoint, health check) from its contract, app.json:
# written on the next line by the xtask, which builds the rendered copy (Docker takes no build
# arg in ENTRYPOINT or HEALTHCHECK).
#xtask:settings /out/
# Dependencies first: this layer (and Go's build cache inside it) survives edits to the app.
# GOPATH mode builds the vendored packages; module mode, with no go.mod yet, the standard
# library the app uses (PREBUILD and its GOFLAGS come from the xtask).
COPY vendor/ vendor/
ARG PREBUILD PREBUILD_GOFLAGS
RUN GOFLAGS="$PREBUILD_GOFLAGS" go build $PREBUILD
ARG LDFLAGS GO_OUT GO_PACKAGES BINARIES FILES DATA_DIR
# The app: an edit reruns only the steps from here on. The binaries are read-only for everyone;
# the app's extra files (FILES) go to /out/DATA_DIR, read-only too.
COPY . .
RUN go build -ldflags "$LDFLAGS" -o "$GO_OUT" $GO_PACKAGES && chmod 0555 $BINARIES \
 && if [ -n "$FILES" ]; then mkdir "/out/$DATA_DIR" && cp -R $FILES "/out/$DATA_DIR/" \
    && find "/out/$DATA_DIR" -type d -exec chmod 0755 {} + \
    && find "/out/$DATA_DIR" -type f -exec chmod 0444 {} +; fi
# Labels in one instruction (the legacy builder makes a step of every `--label`): the keys are the
# xtask's (module `project`), the values its build args. After the last RUN: a new commit changes
# them, and must not invalidate the build steps.
ARG VERSION REVISION CREATED SOURCE GO_VERSION BUILDER_IMAGE
ARG TITLE
LABEL org.opencontainers.image.title="$TITLE" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.created="$CREATED" \
      org.opencontainers.image.source="$SOURCE" \
      dev.go-docker-prod.project=go-docker-prod \
      dev.go-docker-prod.stage=builder \
      dev.go-docker-prod.go="$GO_VERSION" \
      dev.go-docker-prod.builder-base="$BUILDER_IMAGE"
