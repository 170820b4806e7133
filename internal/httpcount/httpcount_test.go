package httpcount

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHandlerCounts(t *testing.T) {
	h := &Handler{H: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "0123456789")
	})}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for range 3 {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := h.Sent.Load(); got != 30 {
		t.Errorf("Sent = %d after three 10-byte bodies, want 30", got)
	}
}
