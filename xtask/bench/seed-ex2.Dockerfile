# Bench fixture: the tutorial's ex2.Dockerfile, on scratch (alpine:3.7 and `apk add` are out of
# reach here). Its context is the directory the seed's `docker run -v …:/dist … cp` filled.
FROM scratch
LABEL dev.go-docker-prod.bench=fixture
WORKDIR /app
ADD main /app/main
CMD ["./main"]
