# Bench fixture, not a product file: the Go Dockerfile `docker init` generates (its published shape:
# a cache mount for Go's module cache, the sources bind-mounted into the build step, a small
# runtime stage with CA certificates and a non-root user), adapted to what this machine and this
# GOPATH/Glide app allow: the builder base is a build arg (the same base and Go as ours), no
# `# syntax=` line (the frontend image cannot be pulled; the engine's BuildKit parses RUN --mount),
# GOPATH mode instead of `go mod download` (glide's vendor/ is in the context), and scratch with the
# builder's CA bundle instead of alpine (which cannot be pulled), so no `apk add` and no `adduser`.
ARG BUILDER_IMAGE
FROM ${BUILDER_IMAGE} AS build
LABEL dev.go-docker-prod.bench=fixture
WORKDIR /go/src/app
ENV GO111MODULE=off
RUN --mount=type=cache,target=/go/pkg/mod/ \
    --mount=type=bind,target=. \
    CGO_ENABLED=0 go build -o /bin/server .

FROM scratch AS final
LABEL dev.go-docker-prod.bench=fixture
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
ARG UID=10001
USER ${UID}
COPY --from=build /bin/server /bin/
EXPOSE 8080
ENTRYPOINT [ "/bin/server" ]
