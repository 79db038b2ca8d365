// A service that needs $PORT (no default of its own), reads templates/*.html at start and serves
// static/: a test fixture of the xtask (written for it).
package main

import (
	"log"
	"net/http"
	"os"

	"github.com/example/greeter/internal/page"
	"github.com/julienschmidt/httprouter"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		log.Fatal("PORT must be set")
	}
	pages, err := page.Load()
	if err != nil {
		log.Fatal(err)
	}
	r := httprouter.New()
	r.GET("/hello/:name", func(w http.ResponseWriter, _ *http.Request, ps httprouter.Params) {
		pages.Hello(w, ps.ByName("name"))
	})
	r.ServeFiles("/static/*filepath", http.Dir("static"))
	log.Fatal(http.ListenAndServe(":"+port, r))
}
