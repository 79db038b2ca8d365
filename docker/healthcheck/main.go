// The image's HTTP health check, for images without a shell or curl: the xtask builds it
// (`"health": {"http": PATH}` in app.json) with the app's Go and flags, and the image's
// HEALTHCHECK runs it as
//
//	/healthcheck http://127.0.0.1:PORT/PATH [VARIABLE]
//
// It asks once and exits 0 when the answer's status is 2xx or 3xx, 1 otherwise, saying why on
// standard error (what `docker inspect` shows of a health check). When VARIABLE (the app's
// port_env, such as PORT) is set in its environment, its value is the port asked.
package main

import (
	"bufio"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 || !strings.HasPrefix(os.Args[1], "http://") {
		fail("usage: healthcheck http://HOST:PORT/PATH [PORT_VARIABLE]")
	}
	address, path, found := strings.Cut(strings.TrimPrefix(os.Args[1], "http://"), "/")
	path = "/" + path
	if !found {
		path = "/"
	}
	if len(os.Args) == 3 {
		if port := os.Getenv(os.Args[2]); port != "" {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				fail("bad address " + address + ": " + err.Error())
			}
			address = net.JoinHostPort(host, port)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	conn, err := net.DialTimeout("tcp", address, time.Until(deadline))
	if err != nil {
		fail(err.Error())
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	request := "GET " + path + " HTTP/1.0\r\nHost: " + address + "\r\nUser-Agent: healthcheck\r\n\r\n"
	if _, err := conn.Write([]byte(request)); err != nil {
		fail(err.Error())
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && line == "" {
		fail("no answer from " + address + path + ": " + err.Error())
	}
	line = strings.TrimSpace(line)
	fields := strings.Fields(line)
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/") || len(fields[1]) != 3 {
		fail("not an HTTP answer from " + address + path + ": " + line)
	}
	if fields[1][0] != '2' && fields[1][0] != '3' {
		fail(path + " answered " + line)
	}
}

func fail(why string) {
	os.Stderr.WriteString("healthcheck: " + why + "\n")
	os.Exit(1)
}
