// Package web holds the dashboard: plain HTML, CSS and JavaScript embedded
// in the binary, with no build step. The proxy package serves it at / and
// answers the JSON routes it reads.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Static returns the dashboard's files: index.html, its stylesheet and
// scripts, at the root of the file system.
func Static() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded: it exists
	}
	return sub
}
