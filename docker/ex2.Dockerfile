# The small runtime image, built from dist/ alone (context: dist/, as left by the dist handoff):
# the binary, the CA bundle and passwd/group for the non-root user. Nothing else.
ARG RUNTIME_IMAGE=scratch
FROM ${RUNTIME_IMAGE}
ARG APP_UID
COPY etc/ /etc/
COPY main /main
USER ${APP_UID}:${APP_UID}
EXPOSE 8080
ENTRYPOINT ["/main"]
