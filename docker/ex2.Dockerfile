# The small runtime image, built from dist/ alone (context: dist/, as the dist handoff leaves it):
# the multi-stage Dockerfile's production stage, step for step, with the binary, the CA bundle and
# passwd/group copied from dist/ instead of the builder stage. Nothing else.
ARG RUNTIME_IMAGE=scratch
FROM ${RUNTIME_IMAGE}
LABEL dev.go-docker-prod.project=go-docker-prod
ARG APP_UID
USER ${APP_UID}:${APP_UID}
EXPOSE 8080
ENTRYPOINT ["/main"]
HEALTHCHECK --interval=2s --timeout=2s --retries=3 CMD ["/main", "-healthcheck"]
COPY --chown=0:0 etc/ /etc/
COPY --chown=0:0 main /main
ARG VERSION REVISION CREATED SOURCE GO_VERSION BUILDER_IMAGE
LABEL org.opencontainers.image.title=go-docker-prod \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.created="$CREATED" \
      org.opencontainers.image.source="$SOURCE" \
      dev.go-docker-prod.project=go-docker-prod \
      dev.go-docker-prod.stage=production \
      dev.go-docker-prod.go="$GO_VERSION" \
      dev.go-docker-prod.builder-base="$BUILDER_IMAGE"
