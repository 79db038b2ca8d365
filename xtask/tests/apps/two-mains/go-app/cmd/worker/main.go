// The shop's worker: the second main package, shipped in the same image.
package main

import (
	"fmt"

	"example.com/shop/internal/jobs"
)

func main() {
	fmt.Printf("worker: %d jobs\n", jobs.Pending())
}
