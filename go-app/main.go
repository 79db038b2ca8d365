// Command go-docker-prod is a small web service on httprouter, built by the
// workspace's `cargo xtask` into a lean production container.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/julienschmidt/httprouter"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	defaultPort     = "8080"
	shutdownTimeout = 5 * time.Second
)

func index(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	io.WriteString(w, "Welcome to go-docker-prod!\n")
}

func about(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	io.WriteString(w, "A Go web app on httprouter, shipped in a lean container.\n")
}

func hello(w http.ResponseWriter, _ *http.Request, ps httprouter.Params) {
	fmt.Fprintf(w, "Hello, %s!\n", ps.ByName("name"))
}

func healthz(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	io.WriteString(w, "ok")
}

func showVersion(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	io.WriteString(w, version+"\n")
}

// plain marks every answer as plain text that browsers must not sniff: /hello echoes its input.
func plain(h httprouter.Handle) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h(w, r, ps)
	}
}

func newRouter() *httprouter.Router {
	r := httprouter.New()
	r.GET("/", plain(index))
	r.GET("/about", plain(about))
	r.GET("/hello/:name", plain(hello))
	r.GET("/healthz", plain(healthz))
	r.GET("/version", plain(showVersion))
	return r
}

func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10, // the request line counts too: a 64 KB path is refused
	}
}

// serve answers on ln until ctx is cancelled, then shuts down gracefully.
func serve(ctx context.Context, ln net.Listener) error {
	srv := newServer(newRouter())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// healthcheck probes the running server's /healthz on loopback: the image's HEALTHCHECK runs
// `/main -healthcheck`, which works on scratch (no shell, no curl).
func healthcheck(port string) int {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "unhealthy: /healthz answered", resp.Status)
		return 1
	}
	return 0
}

func main() {
	probe := flag.Bool("healthcheck", false, "probe the running server's /healthz and exit 0 when healthy")
	flag.Parse()
	port := os.Getenv("PORT")
	if port == "" {
		port = defaultPort
	}
	if *probe {
		os.Exit(healthcheck(port))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("Starting Server (with httprouter) on Port %s", port)
	if err := serve(ctx, ln); err != nil {
		log.Fatal(err)
	}
	log.Print("Server stopped")
}
