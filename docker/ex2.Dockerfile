# The small runtime image, built from dist/ alone (context: what the dist handoff left in dist/,
# the binaries, etc/ and the app's files, without SHA256SUMS): the multi-stage Dockerfile's
# production stage, step for step, with the files copied from dist/ instead of the builder stage.
# Nothing else.
ARG RUNTIME_IMAGE=scratch
FROM ${RUNTIME_IMAGE}
LABEL dev.go-docker-prod.project=go-docker-prod
ARG APP_UID
USER ${APP_UID}:${APP_UID}
#xtask:settings /
COPY --chown=0:0 . /
ARG VERSION REVISION CREATED SOURCE GO_VERSION BUILDER_IMAGE
ARG TITLE
LABEL org.opencontainers.image.title="$TITLE" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.created="$CREATED" \
      org.opencontainers.image.source="$SOURCE" \
      dev.go-docker-prod.project=go-docker-prod \
      dev.go-docker-prod.stage=production \
      dev.go-docker-prod.go="$GO_VERSION" \
      dev.go-docker-prod.builder-base="$BUILDER_IMAGE"
