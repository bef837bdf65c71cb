"""Scenarios for repos/ratelimit (Go, go test): a token-bucket rate limiter with an injectable clock."""

ALLOW = ("func (l *Limiter) Allow() bool {\n\tl.mu.Lock()\n\tdefer l.mu.Unlock()\n\tl.refill()\n"
         "\tif l.tokens < 1 {\n\t\treturn false\n\t}\n\tl.tokens--\n\treturn true\n}\n")

REPO = {
    "name": "ratelimit",
    "lang": "go",
    "about": "a Go package implementing a token-bucket rate limiter whose clock can be injected for tests",
    "files": {
        "limiter.go": "the `Limiter` type: `New(rate, burst, now)` starts full, `Allow` takes one token after "
                      "`refill` adds `elapsed * rate` tokens capped at `burst`",
        "limiter_test.go": "tests driven by a `fakeClock`: burst then deny, refill over time, and the cap",
        "go.mod": "the module definition (`example.com/ratelimit`, Go 1.19)",
    },
    "symbols": [
        ("refill", "the private method that adds tokens for the elapsed time, capped at the burst size"),
        ("Allow", "the method callers use to ask whether one event may happen now"),
        ("fakeClock", "the test helper that makes time controllable"),
    ],
    "qa": [
        {
            "ask": ["If the limiter sits idle for an hour, can a client then fire a thousand requests at once?",
                    "Does idle time accumulate into a huge burst?"],
            "calls": [("read", {"file_path": "limiter.go"}), ("grep", {"pattern": "^func Test", "path": "limiter_test.go"})],
            "answer": "No. `refill` adds `elapsed * rate` tokens but then clamps: `if l.tokens > l.burst { "
                      "l.tokens = l.burst }`. After any idle period the bucket holds at most `burst` tokens, so a "
                      "client gets at most `burst` immediate requests and then `rate` per second. "
                      "`TestRefillCapsAtBurst` is the test for that cap.",
        },
        {
            "ask": ["How do I test code that uses this limiter without sleeping in the tests?",
                    "Our handler tests are slow because they sleep for the limiter. Is there a better way?"],
            "calls": [("read", {"file_path": "limiter_test.go", "limit": 12}),
                      ("grep", {"pattern": "func New", "path": "limiter.go"})],
            "answer": "Inject a clock. `New(rate, burst, now func() time.Time)` takes the time source, and the "
                      "tests use a tiny `fakeClock` whose `Now` method you pass in and whose `Advance(d)` moves "
                      "time forward instantly:\n\n```go\nclock := &fakeClock{t: time.Unix(0, 0)}\nl := New(2, 1, "
                      "clock.Now)\nclock.Advance(500 * time.Millisecond)\n```\n\nIn your handler tests, build the "
                      "limiter the same way and hand it to the handler instead of constructing one inside it. "
                      "Production code passes `nil`, which means `time.Now`.",
        },
    ],
    "tweaks": [
        {
            "ask": ["New should panic if rate is zero or negative, that's always a programming error.",
                    "Guard New against a non-positive rate with a panic."],
            "file": "limiter.go",
            "edits": [("\tif now == nil {\n", "\tif rate <= 0 {\n\t\tpanic(\"ratelimit: rate must be positive\")\n\t}\n"
                                             "\tif now == nil {\n")],
            "summary": "`New` panics with `ratelimit: rate must be positive` when `rate <= 0`",
        },
        {
            "ask": ["A burst of 0 makes the limiter deny everything forever. Treat burst < 1 as 1.",
                    "Clamp burst to at least 1 in New."],
            "file": "limiter.go",
            "edits": [("\tif now == nil {\n", "\tif burst < 1 {\n\t\tburst = 1\n\t}\n\tif now == nil {\n")],
            "wrong_old": "\tif burst <= 0 {\n",
            "summary": "`New` raises a `burst` below 1 to 1, so a limiter can always let something through "
                       "eventually",
        },
        {
            "ask": ["Add a String method for logging, like `limiter(rate=2/s burst=3)`.",
                    "I want to print limiters in logs: implement fmt.Stringer."],
            "file": "limiter.go",
            "edits": [("import (\n\t\"sync\"\n", "import (\n\t\"fmt\"\n\t\"sync\"\n"),
                      ("// TODO: handle a clock", "// String describes the limiter's configuration.\n"
                       "func (l *Limiter) String() string {\n"
                       "\treturn fmt.Sprintf(\"limiter(rate=%g/s burst=%g)\", l.rate, l.burst)\n}\n\n"
                       "// TODO: handle a clock")],
            "summary": "`*Limiter` implements `fmt.Stringer`: `limiter(rate=2/s burst=3)`",
        },
        {
            "ask": ["Update the doc comment on Limiter: it should mention that it's safe for concurrent use.",
                    "Document on the Limiter type that it can be shared between goroutines."],
            "file": "limiter.go",
            "edits": [("// Limiter allows up to Burst events at once, refilled at Rate tokens per second.\n",
                       "// Limiter allows up to Burst events at once, refilled at Rate tokens per second.\n"
                       "// It is safe for concurrent use by multiple goroutines.\n")],
            "wrong_old": "// Limiter is a token bucket.\n",
            "summary": "The `Limiter` doc comment now says it is safe for concurrent use",
        },
    ],
    "bugs": [
        {
            "file": "limiter.go",
            "good": "\tif l.tokens > l.burst {\n\t\tl.tokens = l.burst\n\t}\n",
            "bad": "",
            "fix": ("\tl.tokens += elapsed * l.rate\n}", "\tl.tokens += elapsed * l.rate\n"
                    "\tif l.tokens > l.burst {\n\t\tl.tokens = l.burst\n\t}\n}"),
            "locate": "func \\(l \\*Limiter\\) refill",
            "report": ["After a quiet night, one client got thousands of requests through at once.",
                       "TestRefillCapsAtBurst is failing."],
            "cause": "`refill` no longer clamped the bucket to `burst`, so idle time banked unlimited tokens",
            "review": "Removing the clamp in `refill` lets idle time accumulate without bound: after an hour at "
                      "10/s a client could send 36,000 requests at once. The burst cap is the point of a token "
                      "bucket; `TestRefillCapsAtBurst` fails without it.",
            "commit": "Simplify refill",
        },
        {
            "file": "limiter.go",
            "good": "tokens: float64(burst), last",
            "bad": "tokens: 0, last",
            "locate": "func New",
            "report": ["A brand-new limiter rejects the very first request.",
                       "TestBurstThenDeny fails: want exactly 2 immediate events."],
            "cause": "`New` started the bucket with `tokens: 0` instead of full, so the initial burst was "
                     "unavailable",
            "review": "Starting with `tokens: 0` means a fresh limiter denies everything until time passes, "
                      "which breaks the documented burst ('allows up to Burst events at once').",
            "commit": "Start limiter empty",
        },
        {
            "file": "limiter.go",
            "good": "\tt := l.now()\n\telapsed := t.Sub(l.last).Seconds()\n\tl.last = t\n",
            "bad": "\tt := l.now()\n\telapsed := t.Sub(l.last).Seconds()\n",
            "locate": "func \\(l \\*Limiter\\) refill",
            "report": ["Under steady load the limiter lets far more than `rate` requests per second through.",
                       "After the first second, every Allow() call succeeds, regardless of the rate."],
            "regression": ("limiter_test.go",
                           "func TestRefillCountsOnlyNewTime(t *testing.T) {\n\tclock := &fakeClock{t: time.Unix(0, 0)}\n"
                           "\tl := New(1, 5, clock.Now)\n\tfor i := 0; i < 5; i++ {\n\t\tl.Allow()\n\t}\n"
                           "\tclock.Advance(time.Second)\n\tgot := 0\n\tfor i := 0; i < 10; i++ {\n"
                           "\t\tif l.Allow() {\n\t\t\tgot++\n\t\t}\n\t}\n\tif got != 1 {\n"
                           "\t\tt.Fatalf(\"got %d tokens after 1s at 1/s, want 1\", got)\n\t}\n}\n"),
            "cause": "`refill` never updated `l.last`, so every call added all the time elapsed since the limiter "
                     "was created, again and again",
            "review": "Without `l.last = t`, every `refill` re-adds all time since construction, so after the "
                      "first second each call refills the bucket. The existing tests only call `Allow` once "
                      "after advancing the clock, which is why they still pass.",
            "commit": "Drop redundant assignment",
        },
        {
            "file": "limiter.go",
            "good": "\tif l.tokens < 1 {\n",
            "bad": "\tif l.tokens <= 0 {\n",
            "locate": "func \\(l \\*Limiter\\) Allow",
            "report": ["Clients sometimes get a request through 250ms after using their last token at 2/s.",
                       "The limiter allows requests when only a fraction of a token has refilled."],
            "regression": ("limiter_test.go",
                           "func TestHalfATokenIsNotEnough(t *testing.T) {\n\tclock := &fakeClock{t: time.Unix(0, 0)}\n"
                           "\tl := New(2, 1, clock.Now)\n\tl.Allow()\n\tclock.Advance(250 * time.Millisecond)\n"
                           "\tif l.Allow() {\n\t\tt.Fatal(\"allowed with only half a token\")\n\t}\n}\n"),
            "cause": "`Allow` checked `l.tokens <= 0`, so half a token was enough and the balance went negative",
            "review": "`l.tokens <= 0` admits an event with a fractional token (0.5 after 250ms at 2/s) and then "
                      "drives the balance negative. An event needs a whole token: `< 1`.",
            "commit": "Allow on any positive balance",
        },
    ],
    "features": [
        {
            "ask": ["Add `Delay() time.Duration`: how long until the next token is available (0 if one is "
                    "available now). It must not consume a token.",
                    "We need a Delay method for Retry-After headers: time until a token is free, without taking it."],
            "locate": "// TODO: handle a clock",
            "test_file": "limiter_test.go",
            "test": "func TestDelayUntilNextToken(t *testing.T) {\n\tclock := &fakeClock{t: time.Unix(0, 0)}\n"
                    "\tl := New(2, 1, clock.Now)\n\tif d := l.Delay(); d != 0 {\n\t\tt.Fatalf(\"full bucket: delay %v\", d)\n\t}\n"
                    "\tl.Allow()\n\tif d := l.Delay(); d != 500*time.Millisecond {\n"
                    "\t\tt.Fatalf(\"delay %v, want 500ms\", d)\n\t}\n}\n",
            "impl": [("limiter.go", "// TODO: handle a clock",
                      "// Delay reports how long until a token is available; 0 means Allow would succeed now.\n"
                      "func (l *Limiter) Delay() time.Duration {\n\tl.mu.Lock()\n\tdefer l.mu.Unlock()\n\tl.refill()\n"
                      "\tif l.tokens >= 1 {\n\t\treturn 0\n\t}\n"
                      "\treturn time.Duration((1 - l.tokens) / l.rate * float64(time.Second))\n}\n\n"
                      "// TODO: handle a clock")],
            "summary": "Added `Limiter.Delay()`, which refills and returns `(1 - tokens) / rate` as a duration, "
                       "or 0 when a token is available, without consuming one",
        },
        {
            "ask": ["Add AllowN(n int) bool that takes n tokens at once, all or nothing."],
            "locate": "// TODO: handle a clock",
            "test_file": "limiter_test.go",
            "test": "func TestAllowNIsAllOrNothing(t *testing.T) {\n\tl := New(1, 3, (&fakeClock{t: time.Unix(0, 0)}).Now)\n"
                    "\tif l.AllowN(4) || !l.AllowN(3) || l.Allow() {\n"
                    "\t\tt.Fatal(\"AllowN should take all requested tokens or none\")\n\t}\n}\n",
            "impl": [("limiter.go", "// TODO: handle a clock",
                      "// AllowN reports whether n events may happen now, taking n tokens if so (all or nothing).\n"
                      "func (l *Limiter) AllowN(n int) bool {\n\tl.mu.Lock()\n\tdefer l.mu.Unlock()\n\tl.refill()\n"
                      "\tif l.tokens < float64(n) {\n\t\treturn false\n\t}\n\tl.tokens -= float64(n)\n\treturn true\n}\n\n"
                      "// TODO: handle a clock")],
            "summary": "Added `Limiter.AllowN(n)`: it takes `n` tokens only if all are available",
            "clarify": {
                "vague": ["Some of our requests are more expensive. Can the limiter charge more than one token?",
                          "We need weighted requests in the rate limiter."],
                "question": "Two things to settle first:\n\n1. If a request costs 5 and only 3 tokens are "
                            "available, should it be rejected outright (all-or-nothing), or take the 3 and wait "
                            "for the rest?\n2. What if the cost exceeds `burst`? It could never succeed; should "
                            "that panic or just return false?",
                "answer": "All-or-nothing. And just return false, no panics in the request path.",
            },
        },
        {
            "ask": ["Add a Tokens() method that returns the current (refilled) token count, for metrics.",
                    "Expose the number of available tokens via Tokens() float64."],
            "locate": "// TODO: handle a clock",
            "test_file": "limiter_test.go",
            "test": "func TestTokensReportsRefill(t *testing.T) {\n\tclock := &fakeClock{t: time.Unix(0, 0)}\n"
                    "\tl := New(4, 2, clock.Now)\n\tl.Allow()\n\tl.Allow()\n\tclock.Advance(250 * time.Millisecond)\n"
                    "\tif got := l.Tokens(); got != 1 {\n\t\tt.Fatalf(\"Tokens() = %v, want 1\", got)\n\t}\n}\n",
            "impl": [("limiter.go", "// TODO: handle a clock",
                      "// Tokens returns how many tokens are available right now.\n"
                      "func (l *Limiter) Tokens() float64 {\n\tl.mu.Lock()\n\tdefer l.mu.Unlock()\n\tl.refill()\n"
                      "\treturn l.tokens\n}\n\n// TODO: handle a clock")],
            "summary": "Added `Limiter.Tokens()`, which refills under the lock and returns the balance",
        },
    ],
    "refactors": [
        {
            "ask": ["Rename the private method refill to replenish.", "Call refill() replenish() instead."],
            "grep": "refill",
            "edits": [("limiter.go", "l.refill()", "l.replenish()"),
                      ("limiter.go", "func (l *Limiter) refill() {", "func (l *Limiter) replenish() {")],
            "sequential": True,
            "summary": "`refill` is now `replenish` (definition and its one call site in `Allow`); it's "
                       "unexported, so nothing outside the package is affected",
        },
        {
            "ask": ["Use math.Min in refill instead of the if statement for the cap.",
                    "Simplify the clamp in refill with math.Min."],
            "read": ["limiter.go"],
            "edits": [("limiter.go", "import (\n\t\"sync\"\n", "import (\n\t\"math\"\n\t\"sync\"\n"),
                      ("limiter.go", "\tl.tokens += elapsed * l.rate\n\tif l.tokens > l.burst {\n\t\tl.tokens = l.burst\n\t}\n",
                       "\tl.tokens = math.Min(l.tokens+elapsed*l.rate, l.burst)\n")],
            "summary": "`refill` computes `math.Min(l.tokens+elapsed*l.rate, l.burst)` in one line",
        },
        {
            "ask": ["Introduce a named `Clock` type (func() time.Time) and use it in the struct and in New.",
                    "Give the clock function type a name: type Clock func() time.Time."],
            "read": ["limiter.go"],
            "edits": [("limiter.go", "// Limiter allows up to", "// Clock returns the current time; tests pass a fake one.\n"
                                                              "type Clock func() time.Time\n\n// Limiter allows up to"),
                      ("limiter.go", "\tnow    func() time.Time\n", "\tnow    Clock\n"),
                      ("limiter.go", "burst int, now func() time.Time) *Limiter", "burst int, now Clock) *Limiter")],
            "summary": "A named `Clock` type is used for the `now` field and `New`'s parameter. A `func() time.Time` "
                       "(like `clock.Now` in the tests) still converts implicitly, so callers don't change",
        },
    ],
    "reviews": [
        {
            "ask": ["Review limiter.go before we put it in front of the API.",
                    "Please review the rate limiter implementation."],
            "files": ["limiter.go"],
            "comments": "1. **Clock going backwards (line 39 TODO).** With an injected clock, `t.Sub(l.last)` can "
                        "be negative and `refill` then removes tokens. `time.Now` is monotonic, but a fake or "
                        "NTP-adjusted wall clock isn't; clamp `elapsed` at 0.\n2. **No validation in `New`.** "
                        "`rate <= 0` or `burst < 1` silently produce a limiter that never allows anything.\n"
                        "3. **Float accumulation.** Repeated `elapsed * rate` adds float error; harmless at these "
                        "rates, worth a comment.\n4. **API gaps.** No `AllowN` or delay query, so callers can't "
                        "produce a `Retry-After` header.\n\nThe locking is right: every path that touches "
                        "`tokens` holds `mu`.",
        },
    ],
    "plans": [
        {
            "ask": ["We need one limiter per API key, and keys come and go. Plan it before writing code.",
                    "How would you add per-client rate limits without leaking memory? Plan only."],
            "explore": [[("read", {"file_path": "limiter.go"}), ("list_dir", {"path": "."})]],
            "plan": "1. Add `Registry` in `registry.go`: `map[string]*entry` guarded by a mutex, where `entry` "
                    "holds a `*Limiter` and a last-used time.\n2. `Registry.Allow(key)` looks up or creates the "
                    "limiter with the registry's rate, burst and clock.\n3. Eviction: drop entries idle longer than "
                    "the time to refill a full bucket, since such a limiter is indistinguishable from a new one. "
                    "Run it on access every N calls, so no goroutine is needed.\n4. Tests with the `fakeClock`: "
                    "separate keys are independent, and idle keys are evicted.\n5. Document that memory is "
                    "bounded by the number of keys active within one refill period.",
            "question": "Should different API keys be able to have different rates (plans/tiers), or is one "
                        "rate for everyone enough for now?",
        },
    ],
    "tradeoffs": [
        {
            "ask": ["Should we replace this with golang.org/x/time/rate?",
                    "Is it worth keeping our own limiter when x/time/rate exists?"],
            "read": ["limiter.go"],
            "answer": "`x/time/rate` is the standard choice: well tested, has `AllowN`, `Reserve` and a "
                      "context-aware `Wait`, and handles edge cases like clocks moving backwards.\n\nOurs is "
                      "smaller and its injectable `now` makes tests trivial; `x/time/rate` instead takes the time "
                      "as an argument (`AllowN(t, n)`), which works for tests too.\n\nI'd switch if you need "
                      "`Wait` or reservations, since reimplementing those correctly is the hard part. If `Allow` "
                      "is all you need, keeping this file avoids a dependency and costs little.",
        },
    ],
    "extra_features": [
        {
            "ask": ["Add a Rate() getter returning the configured tokens per second.",
                    "Expose the limiter's rate through a Rate() method."],
            "locate": "// TODO: handle a clock",
            "test_file": "limiter_test.go",
            "test": "func TestRateGetter(t *testing.T) {\n\tif r := New(2.5, 1, nil).Rate(); r != 2.5 {\n"
                    "\t\tt.Fatalf(\"Rate() = %v\", r)\n\t}\n}\n",
            "impl": [("limiter.go", "// TODO: handle a clock",
                      "// Rate returns the refill rate in tokens per second.\nfunc (l *Limiter) Rate() float64 { return l.rate }\n\n"
                      "// TODO: handle a clock")],
            "summary": "Added `Limiter.Rate()`; `rate` never changes after `New`, so it needs no lock",
        },
    ],
}
