// Package greet says hello; imported by its module path.
package greet

// Hello is the greeting for name.
func Hello(name string) string {
	return "Hello, " + name + "!\n"
}
