// Package kvhttp serves a small in-memory key-value store over HTTP.
package kvhttp

import "sync"

// Store is a map of string keys to string values, safe for concurrent use.
type Store struct {
	mu   sync.RWMutex
	data map[string]string
}

func NewStore() *Store { return &Store{data: map[string]string{}} }

func (s *Store) Get(key string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.data[key]
	return v, ok
}

func (s *Store) Set(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = value
}

// Delete removes key and reports whether it was present.
func (s *Store) Delete(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.data[key]
	delete(s.data, key)
	return ok
}
