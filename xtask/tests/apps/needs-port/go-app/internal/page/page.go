// Package page renders the greeter's pages from templates/; imported by its GOPATH path.
package page

import (
	"html/template"
	"io"
)

// Pages are the templates read at start.
type Pages struct{ t *template.Template }

// Load reads templates/*.html, relative to the working directory.
func Load() (*Pages, error) {
	t, err := template.ParseGlob("templates/*.html")
	if err != nil {
		return nil, err
	}
	return &Pages{t}, nil
}

// Hello writes the greeting page for name.
func (p *Pages) Hello(w io.Writer, name string) error {
	return p.t.ExecuteTemplate(w, "hello.html", name)
}
