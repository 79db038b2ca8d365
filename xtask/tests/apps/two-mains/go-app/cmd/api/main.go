// The shop's api: one of two main packages (a test fixture of the xtask, written for it).
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"

	"example.com/shop/internal/jobs"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/jobs", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d pending\n", jobs.Pending())
	})
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
