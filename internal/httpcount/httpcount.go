// Package httpcount counts the response body bytes an HTTP handler sends:
// the bench and the peer-session tests use it to measure what an image
// server sent.
package httpcount

import (
	"net/http"
	"sync/atomic"
)

// Writer counts the bytes written through it into N.
type Writer struct {
	http.ResponseWriter
	N *atomic.Int64
}

func (w Writer) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.N.Add(int64(n))
	return n, err
}

// Handler serves with H and counts the body bytes it sends in Sent.
type Handler struct {
	H    http.Handler
	Sent atomic.Int64
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.H.ServeHTTP(Writer{w, &h.Sent}, r)
}
