// Package cgi holds the live graph page of the CGI and WSGI examples in this directory,
// so that package serve (`filering serve`) can embed the same page.
package cgi

import _ "embed"

// IndexHTML is index.html: the live graph page. It reads the JSON endpoint "records"
// (long-polling), or Server-Sent Events when the page defines window.FILERING_EVENTS
// before its script runs.
//
//go:embed index.html
var IndexHTML []byte
