# The small runtime image, built from dist/ alone (context: dist/, as the dist handoff leaves it):
# the binary, the CA bundle and passwd/group for the non-root user. Nothing else. Labels as in
# ex1.Dockerfile.
ARG RUNTIME_IMAGE=scratch
FROM ${RUNTIME_IMAGE}
# Ours from the first step: a build stopped halfway leaves images that `clean` can recognise.
LABEL dev.go-docker-prod.project=go-docker-prod
ARG APP_UID
ARG VERSION REVISION CREATED SOURCE CHECKOUT
USER ${APP_UID}:${APP_UID}
EXPOSE 8080
ENTRYPOINT ["/main"]
COPY etc/ /etc/
COPY main /main
LABEL org.opencontainers.image.title=go-docker-prod \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.created=$CREATED \
      org.opencontainers.image.source=$SOURCE \
      dev.go-docker-prod.project=go-docker-prod \
      dev.go-docker-prod.checkout=$CHECKOUT \
      dev.go-docker-prod.stage=production
