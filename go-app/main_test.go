package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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
			if ct := res.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
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

// startServer serves the app's router with the app's server settings on a loopback port.
// tune may shorten the timeouts so that a test can watch them act.
func startServer(t *testing.T, tune func(*http.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(newRouter())
	if tune != nil {
		tune(srv)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func mustGet(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func TestOversizedRequestsAreRefusedAndServingGoesOn(t *testing.T) {
	addr := startServer(t, nil)
	longPath := "/hello/" + strings.Repeat("x", 64<<10)
	if got := mustGet(t, "http://"+addr+longPath); got < 400 {
		t.Errorf("64 KB path: status %d, want an error", got)
	}
	req, err := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		req.Header.Add(fmt.Sprintf("X-Flood-%d", i), strings.Repeat("y", 64))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("header flood: status %d, want 431", res.StatusCode)
	}
	if got := mustGet(t, "http://"+addr+"/healthz"); got != http.StatusOK {
		t.Errorf("after the oversized requests: status %d, want 200", got)
	}
}

func TestSlowClientIsCutOff(t *testing.T) {
	const timeout = 200 * time.Millisecond
	addr := startServer(t, func(s *http.Server) {
		s.ReadHeaderTimeout, s.ReadTimeout = timeout, timeout
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Half a request line, then nothing: the server must close the connection by itself.
	if _, err := io.WriteString(conn, "GET /healthz HT"); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(20 * timeout))
	started := time.Now()
	_, err = io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection was still open after %v", time.Since(started))
	}
}

func TestBoundedLoadHasNoErrors(t *testing.T) {
	const (
		connections = 50
		requests    = 20000
	)
	addr := startServer(t, nil)
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: connections},
	}
	var failed int64
	var wg sync.WaitGroup
	for w := 0; w < connections; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < requests/connections; i++ {
				res, err := client.Get("http://" + addr + "/hello/load")
				if err != nil {
					atomic.AddInt64(&failed, 1)
					continue
				}
				body, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil || res.StatusCode != http.StatusOK || string(body) != "Hello, load!\n" {
					atomic.AddInt64(&failed, 1)
				}
			}
		}()
	}
	wg.Wait()
	if failed != 0 {
		t.Fatalf("%d of %d requests failed", failed, requests)
	}
}

func TestHealthcheckProbesTheServer(t *testing.T) {
	addr := startServer(t, nil)
	_, port, _ := net.SplitHostPort(addr)
	if code := healthcheck(port); code != 0 {
		t.Fatalf("healthcheck of a serving server: exit %d, want 0", code)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, closed, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	if code := healthcheck(closed); code != 1 {
		t.Fatalf("healthcheck of a closed port: exit %d, want 1", code)
	}
}
