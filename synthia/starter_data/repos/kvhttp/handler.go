package kvhttp

import (
	"io"
	"net/http"
	"strings"
)

const maxValueBytes = 1 << 16

// Handler serves GET, PUT and DELETE on /kv/{key}.
func Handler(s *Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/kv/")
		if key == "" || key == r.URL.Path {
			http.Error(w, "missing key", http.StatusBadRequest)
			return
		}
		switch r.Method {
		case http.MethodGet:
			v, ok := s.Get(key)
			if !ok {
				http.NotFound(w, r)
				return
			}
			io.WriteString(w, v)
		case http.MethodPut:
			body, err := io.ReadAll(io.LimitReader(r.Body, maxValueBytes+1))
			if err != nil || len(body) > maxValueBytes {
				http.Error(w, "value too large", http.StatusRequestEntityTooLarge)
				return
			}
			s.Set(key, string(body))
			w.WriteHeader(http.StatusNoContent)
		case http.MethodDelete:
			if !s.Delete(key) {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			// TODO: support HEAD for cheap existence checks
			w.Header().Set("Allow", "GET, PUT, DELETE")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
}
