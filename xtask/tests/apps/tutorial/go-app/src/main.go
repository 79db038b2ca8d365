// A web app shaped like the tutorial's: httprouter, a fixed port, no health route, no signal
// handling. A test fixture of the xtask (written for it).
package main

import (
	"fmt"
	"log"
	"net/http"

	"github.com/julienschmidt/httprouter"
)

func index(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	fmt.Fprint(w, "Welcome!\n")
}

func about(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	fmt.Fprint(w, "A small web app.\n")
}

func hello(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	fmt.Fprintf(w, "Hello, %s!\n", ps.ByName("name"))
}

func main() {
	router := httprouter.New()
	router.GET("/", index)
	router.GET("/about", about)
	router.GET("/hello/:name", hello)
	log.Println("Starting Server (with httprouter) on Port 8080")
	log.Fatal(http.ListenAndServe(":8080", router))
}
