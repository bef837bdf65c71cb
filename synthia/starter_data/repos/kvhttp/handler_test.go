package kvhttp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func do(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec
}

func TestPutThenGet(t *testing.T) {
	h := Handler(NewStore())
	if rec := do(h, "PUT", "/kv/color", "blue"); rec.Code != http.StatusNoContent {
		t.Fatalf("PUT status %d", rec.Code)
	}
	if rec := do(h, "GET", "/kv/color", ""); rec.Code != 200 || rec.Body.String() != "blue" {
		t.Fatalf("GET got %d %q", rec.Code, rec.Body.String())
	}
}

func TestPostIsNotAllowed(t *testing.T) {
	rec := do(Handler(NewStore()), "POST", "/kv/x", "")
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") == "" {
		t.Fatalf("status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestMissingKeyIs404(t *testing.T) {
	if rec := do(Handler(NewStore()), "GET", "/kv/nope", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404", rec.Code)
	}
}
