# Bench fixture: the tutorial's ex1.Dockerfile (the fat builder), with the substitutions described
# in seed-multistage.Dockerfile.
ARG BUILDER_IMAGE
FROM ${BUILDER_IMAGE}
LABEL dev.go-docker-prod.bench=fixture
ENV GO111MODULE=off
WORKDIR /go/src/app
ADD glide.yaml glide.yaml
ADD glide.lock glide.lock
ADD vendor vendor
ADD main.go main.go
RUN CGO_ENABLED=0 GOOS=linux go build -a -installsuffix cgo -o main .
CMD ["./main"]
