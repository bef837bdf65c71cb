// Package ratelimit implements a token-bucket limiter with an injectable clock.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter allows up to Burst events at once, refilled at Rate tokens per second.
type Limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

// New returns a full limiter. now may be nil to use the wall clock.
func New(rate float64, burst int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{rate: rate, burst: float64(burst), tokens: float64(burst), last: now(), now: now}
}

// Allow reports whether one event may happen now, taking a token if so.
func (l *Limiter) Allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill()
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// TODO: handle a clock that moves backwards (negative elapsed time)
func (l *Limiter) refill() {
	t := l.now()
	elapsed := t.Sub(l.last).Seconds()
	l.last = t
	l.tokens += elapsed * l.rate
	if l.tokens > l.burst {
		l.tokens = l.burst
	}
}
