# Bench fixture, not a product file: the tutorial's multi-stage build as it wrote it (Feb 2018),
# with two substitutions forced by this machine: the base images are build args (same builder base
# and Go as ours; scratch instead of alpine:3.7, which cannot be pulled here), and glide's vendor/
# is copied in instead of `RUN glide install` inside the image (no GitHub from containers).
# Kept: GOPATH layout, ADD order, and `go build -a -installsuffix cgo`, which rebuilds everything.
# Added: the bench's label in each stage's first step, so that the bench finds (and removes) the
# images it leaves, the dangling builder stage included, and no one else's.
ARG BUILDER_IMAGE
FROM ${BUILDER_IMAGE} as builder
LABEL dev.go-docker-prod.bench=fixture
ENV GO111MODULE=off
WORKDIR /go/src/app
ADD glide.yaml glide.yaml
ADD glide.lock glide.lock
ADD vendor vendor
ADD main.go main.go
RUN CGO_ENABLED=0 GOOS=linux go build -a -installsuffix cgo -o main .

FROM scratch
LABEL dev.go-docker-prod.bench=fixture
WORKDIR /app
COPY --from=builder /go/src/app/main /app/main
CMD ["./main"]
