// The shop's worker: the second main package. It serves no HTTP; it works until SIGTERM.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"example.com/shop/internal/jobs"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	fmt.Printf("worker: %d jobs\n", jobs.Pending())
	<-stop
	fmt.Println("worker: stopped")
}
