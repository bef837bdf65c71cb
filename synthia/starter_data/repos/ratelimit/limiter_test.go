package ratelimit

import (
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func TestRefillOverTime(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	l := New(2, 1, clock.Now)
	l.Allow()
	clock.Advance(500 * time.Millisecond)
	if !l.Allow() {
		t.Fatal("expected a token after 500ms at 2/s")
	}
}

func TestRefillCapsAtBurst(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	l := New(10, 2, clock.Now)
	clock.Advance(time.Hour)
	allowed := 0
	for i := 0; i < 5; i++ {
		if l.Allow() {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("allowed %d events, want 2", allowed)
	}
}

func TestBurstThenDeny(t *testing.T) {
	l := New(1, 2, (&fakeClock{}).Now)
	if !l.Allow() || !l.Allow() || l.Allow() {
		t.Fatal("want exactly 2 immediate events")
	}
}
