package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRoutes(t *testing.T) {
	version = "v-test"
	srv := httptest.NewServer(newRouter())
	defer srv.Close()

	cases := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/", http.StatusOK, "Welcome to go-docker-prod!\n"},
		{"GET", "/about", http.StatusOK, "A Go web app on httprouter, shipped in a lean container.\n"},
		{"GET", "/hello/gopher", http.StatusOK, "Hello, gopher!\n"},
		{"GET", "/healthz", http.StatusOK, "ok"},
		{"GET", "/version", http.StatusOK, "v-test\n"},
		{"GET", "/nope", http.StatusNotFound, "404 page not found\n"},
		{"POST", "/healthz", http.StatusMethodNotAllowed, "Method Not Allowed\n"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			req, err := http.NewRequest(c.method, srv.URL+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != c.status || string(body) != c.body {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, body, c.status, c.body)
			}
		})
	}
}

func TestServerHasTimeouts(t *testing.T) {
	s := newServer(http.NotFoundHandler())
	if s.ReadHeaderTimeout == 0 || s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 {
		t.Fatalf("server without timeouts: %+v", s)
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()

	res, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v, want nil after shutdown", err)
		}
	case <-time.After(shutdownTimeout + time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Fatal("server still answers after shutdown")
	}
}
