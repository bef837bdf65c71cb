"""Scenarios for repos/kvhttp (Go, go test + httptest): an HTTP handler for an in-memory key-value store."""

REPO = {
    "name": "kvhttp",
    "lang": "go",
    "about": "a Go package that serves an in-memory key-value store over HTTP (`GET`/`PUT`/`DELETE` on "
             "`/kv/{key}`)",
    "history": [("Add DELETE support", ["store.go"])],
    "files": {
        "store.go": "`Store`, a map guarded by a `sync.RWMutex`, with `Get`, `Set` and `Delete` (which reports "
                    "whether the key existed)",
        "handler.go": "`Handler(store)`: parses the key from `/kv/{key}`, dispatches on the method, limits "
                      "values to 64 KiB and answers 405 with an `Allow` header for anything else",
        "handler_test.go": "`httptest`-based tests for PUT/GET, 404s and the 405 response",
        "go.mod": "the module definition (`example.com/kvhttp`, Go 1.19)",
    },
    "symbols": [
        ("maxValueBytes", "the 64 KiB limit on PUT bodies"),
        ("NewStore", "the constructor for the in-memory store"),
        ("Delete", "the store method that removes a key and reports whether it existed"),
    ],
    "qa": [
        {
            "ask": ["What happens if someone PUTs a 10 MB value?",
                    "Is there any limit on the size of a value?"],
            "calls": [("grep", {"pattern": "maxValueBytes|TooLarge", "path": "handler.go"})],
            "answer": "It's rejected with 413 Request Entity Too Large. The handler reads at most "
                      "`maxValueBytes+1` bytes (`io.LimitReader`), and if it got more than `maxValueBytes` (64 "
                      "KiB, `1 << 16`) it answers 413 without storing anything. Reading one extra byte is what "
                      "distinguishes 'exactly 64 KiB' from 'too big' without buffering the whole 10 MB.",
        },
        {
            "ask": ["Which status codes can this API return, and when?",
                    "Give me a table of the responses the handler produces."],
            "calls": [("read", {"file_path": "handler.go"})],
            "answer": "| Status | When |\n|---|---|\n| 200 | `GET` of an existing key (body = value) |\n| 204 | "
                      "successful `PUT` or `DELETE` |\n| 400 | path without a key (`/kv/`) or outside `/kv/` |\n| "
                      "404 | `GET` or `DELETE` of a missing key |\n| 405 | any other method, with `Allow: GET, PUT, "
                      "DELETE` |\n| 413 | `PUT` body over 64 KiB |\n\nNote that a failed body read also reports "
                      "413, which is misleading for a client that disconnected mid-upload.",
        },
    ],
    "tweaks": [
        {
            "ask": ["Raise the value size limit to 1 MiB.", "64 KiB values are too small for us; allow up to 1 MiB."],
            "file": "handler.go",
            "edits": [("const maxValueBytes = 1 << 16", "const maxValueBytes = 1 << 20")],
            "wrong_old": "const maxValueBytes = 65536",
            "summary": "`maxValueBytes` is now `1 << 20` (1 MiB)",
        },
        {
            "ask": ["The 400 error should explain the expected path: 'key required: use /kv/{key}'.",
                    "Make the missing-key error message more helpful, mention /kv/{key}."],
            "file": "handler.go",
            "edits": [('http.Error(w, "missing key", http.StatusBadRequest)',
                       'http.Error(w, "key required: use /kv/{key}", http.StatusBadRequest)')],
            "wrong_old": 'http.Error(w, "missing key", 400)',
            "summary": "A request without a key now gets `key required: use /kv/{key}` with the 400",
        },
        {
            "ask": ["The 413 message should say what the limit is.", "Change 'value too large' to include the 64 KiB limit."],
            "file": "handler.go",
            "edits": [('http.Error(w, "value too large", http.StatusRequestEntityTooLarge)',
                       'http.Error(w, "value too large (max 64 KiB)", http.StatusRequestEntityTooLarge)')],
            "summary": "The 413 response body now reads `value too large (max 64 KiB)`",
        },
        {
            "ask": ["Use http.StatusOK instead of the bare 200 in the tests.", "Replace the magic 200 in handler_test.go "
                    "with the named constant."],
            "file": "handler_test.go",
            "edits": [("rec.Code != 200 ||", "rec.Code != http.StatusOK ||")],
            "wrong_old": "rec.Code != 200 {",
            "summary": "`TestPutThenGet` compares against `http.StatusOK`",
        },
    ],
    "bugs": [
        {
            "file": "store.go",
            "good": "\t_, ok := s.data[key]\n\tdelete(s.data, key)\n\treturn ok\n",
            "bad": "\tdelete(s.data, key)\n\treturn true\n",
            "locate": "func \\(s \\*Store\\) Delete",
            "report": ["DELETE of a key that doesn't exist returns 204 instead of 404.",
                       "Deleting a missing key claims success."],
            "regression": ("handler_test.go",
                           "func TestDeleteMissingIs404(t *testing.T) {\n"
                           "\tif rec := do(Handler(NewStore()), \"DELETE\", \"/kv/ghost\", \"\"); rec.Code != http.StatusNotFound {\n"
                           "\t\tt.Fatalf(\"status %d, want 404\", rec.Code)\n\t}\n}\n"),
            "cause": "`Store.Delete` always returned `true`, so the handler never took its 404 branch",
            "review": "`Delete` now returns `true` unconditionally, contradicting its doc comment, and the "
                      "handler relies on that result to answer 404 for missing keys. No test deletes a missing "
                      "key, so this passes CI.",
            "commit": "Simplify Delete",
        },
        {
            "file": "handler.go",
            "good": "\t\t\ts.Set(key, string(body))\n\t\t\tw.WriteHeader(http.StatusNoContent)\n",
            "bad": "\t\t\ts.Set(key, string(body))\n\t\t\tw.WriteHeader(http.StatusOK)\n",
            "locate": "case http.MethodPut",
            "report": ["PUT returns 200 now, and TestPutThenGet fails.", "The PUT test is failing on CI."],
            "cause": "the PUT branch wrote `http.StatusOK` instead of `http.StatusNoContent` (the response has no "
                     "body)",
            "review": "PUT now answers 200 with an empty body; the API (and `TestPutThenGet`) uses 204 No Content "
                      "for bodiless success, as `DELETE` still does.",
            "commit": "Return 200 from PUT",
        },
        {
            "file": "handler.go",
            "good": "\t\t\tw.Header().Set(\"Allow\", \"GET, PUT, DELETE\")\n",
            "bad": "",
            "fix": ("\t\t\t// TODO: support HEAD for cheap existence checks\n\t\t\thttp.Error(",
                    "\t\t\t// TODO: support HEAD for cheap existence checks\n"
                    "\t\t\tw.Header().Set(\"Allow\", \"GET, PUT, DELETE\")\n\t\t\thttp.Error("),
            "locate": "default:",
            "report": ["TestPostIsNotAllowed fails: the Allow header is empty.",
                       "Our API linter complains that 405 responses lack an Allow header."],
            "cause": "the `default` branch no longer set the `Allow` header before writing the 405, which HTTP "
                     "requires",
            "review": "A 405 response must carry an `Allow` header listing the supported methods (RFC 9110); "
                      "removing it breaks `TestPostIsNotAllowed` and clients that discover methods that way.",
            "commit": "Trim default branch",
        },
        {
            "file": "handler.go",
            "good": "len(body) > maxValueBytes",
            "bad": "len(body) >= maxValueBytes",
            "locate": "case http.MethodPut",
            "report": ["A value of exactly 64 KiB is rejected with 413, but the limit is supposed to be inclusive.",
                       "PUT of a 65536-byte value fails; 65535 works."],
            "regression": ("handler_test.go",
                           "func TestValueAtLimitIsAccepted(t *testing.T) {\n"
                           "\trec := do(Handler(NewStore()), \"PUT\", \"/kv/big\", strings.Repeat(\"x\", maxValueBytes))\n"
                           "\tif rec.Code != http.StatusNoContent {\n\t\tt.Fatalf(\"status %d, want 204\", rec.Code)\n\t}\n}\n"),
            "cause": "the size check used `>=`, so a body of exactly `maxValueBytes` counted as too large",
            "review": "`len(body) >= maxValueBytes` rejects a value of exactly 64 KiB. The reader allows "
                      "`maxValueBytes+1` bytes precisely so that only larger bodies fail; the check should be `>`.",
            "commit": "Stricter size check",
        },
    ],
    "features": [
        {
            "ask": ["Support HEAD: 200 with no body if the key exists, 404 otherwise (see the TODO).",
                    "Implement the HEAD TODO in the handler."],
            "locate": "case http.MethodDelete",
            "test_file": "handler_test.go",
            "test": "func TestHeadReportsExistence(t *testing.T) {\n\th := Handler(NewStore())\n\tdo(h, \"PUT\", \"/kv/a\", \"1\")\n"
                    "\tif rec := do(h, \"HEAD\", \"/kv/a\", \"\"); rec.Code != 200 || rec.Body.Len() != 0 {\n"
                    "\t\tt.Fatalf(\"HEAD existing: %d %q\", rec.Code, rec.Body.String())\n\t}\n"
                    "\tif rec := do(h, \"HEAD\", \"/kv/b\", \"\"); rec.Code != http.StatusNotFound {\n"
                    "\t\tt.Fatalf(\"HEAD missing: %d\", rec.Code)\n\t}\n}\n",
            "impl": [("handler.go", "\t\tcase http.MethodDelete:\n",
                      "\t\tcase http.MethodHead:\n\t\t\tif _, ok := s.Get(key); !ok {\n\t\t\t\thttp.NotFound(w, r)\n"
                      "\t\t\t\treturn\n\t\t\t}\n\t\t\tw.WriteHeader(http.StatusOK)\n\t\tcase http.MethodDelete:\n"),
                     ("handler.go", "\t\t\t// TODO: support HEAD for cheap existence checks\n", ""),
                     ("handler.go", '"GET, PUT, DELETE")', '"GET, HEAD, PUT, DELETE")')],
            "summary": "`HEAD /kv/{key}` answers 200 with no body when the key exists and 404 otherwise; the "
                       "`Allow` header lists `HEAD` and the TODO is gone",
        },
        {
            "ask": ["Add Store.Len() returning the number of keys, for a metrics endpoint.",
                    "I need the number of stored keys: add a Len method to Store."],
            "locate": "// Delete removes key",
            "test_file": "handler_test.go",
            "test": "func TestStoreLen(t *testing.T) {\n\ts := NewStore()\n\ts.Set(\"a\", \"1\")\n\ts.Set(\"a\", \"2\")\n"
                    "\ts.Set(\"b\", \"3\")\n\tif s.Len() != 2 {\n\t\tt.Fatalf(\"Len() = %d, want 2\", s.Len())\n\t}\n}\n",
            "impl": [("store.go", "// Delete removes key", "// Len returns the number of keys.\nfunc (s *Store) Len() int {\n"
                      "\ts.mu.RLock()\n\tdefer s.mu.RUnlock()\n\treturn len(s.data)\n}\n\n// Delete removes key")],
            "summary": "Added `Store.Len()`, which reads `len(s.data)` under the read lock",
        },
        {
            "ask": ["PUT should answer 201 Created for a new key and 204 when it replaces an existing value."],
            "locate": "case http.MethodPut",
            "test_file": "handler_test.go",
            "test": "func TestPutCreatedThenReplaced(t *testing.T) {\n\th := Handler(NewStore())\n"
                    "\tfirst, second := do(h, \"PUT\", \"/kv/k\", \"1\"), do(h, \"PUT\", \"/kv/k\", \"2\")\n"
                    "\tif first.Code != http.StatusCreated || second.Code != http.StatusNoContent {\n"
                    "\t\tt.Fatalf(\"got %d then %d\", first.Code, second.Code)\n\t}\n}\n",
            "test_edits": [("handler_test.go", "h := Handler(NewStore())\n\tif rec := do(h, \"PUT\", \"/kv/color\", \"blue\"); rec.Code != http.StatusNoContent {",
                            "h := Handler(NewStore())\n\tif rec := do(h, \"PUT\", \"/kv/color\", \"blue\"); rec.Code != http.StatusCreated {")],
            "impl": [("store.go", "func (s *Store) Set(key, value string) {\n\ts.mu.Lock()\n\tdefer s.mu.Unlock()\n\ts.data[key] = value\n}",
                      "// Set stores value under key and reports whether the key already existed.\n"
                      "func (s *Store) Set(key, value string) bool {\n\ts.mu.Lock()\n\tdefer s.mu.Unlock()\n"
                      "\t_, existed := s.data[key]\n\ts.data[key] = value\n\treturn existed\n}"),
                     ("handler.go", "\t\t\ts.Set(key, string(body))\n\t\t\tw.WriteHeader(http.StatusNoContent)\n",
                      "\t\t\tif s.Set(key, string(body)) {\n\t\t\t\tw.WriteHeader(http.StatusNoContent)\n"
                      "\t\t\t} else {\n\t\t\t\tw.WriteHeader(http.StatusCreated)\n\t\t\t}\n")],
            "summary": "`Store.Set` now reports whether the key existed, and PUT answers 201 for a new key and "
                       "204 for a replacement (`TestPutThenGet` now expects 201 for its first PUT)",
            "clarify": {
                "vague": ["PUT should tell clients whether it created something new.",
                          "Clients can't tell whether a PUT created or overwrote a key. Fix that?"],
                "question": "The usual convention is 201 Created for a new key and 204 No Content for an "
                            "overwrite. Is that what you want? Two follow-ups: should the 201 carry a `Location` "
                            "header (it would just echo the URL), and is it OK that `Store.Set` changes "
                            "signature to return whether the key existed?",
                "answer": "Yes to 201/204, no Location header, and changing Set is fine.",
            },
        },
    ],
    "refactors": [
        {
            "ask": ["Extract the key parsing at the top of the handler into a `keyFrom(path string) (string, bool)` helper.",
                    "Refactor: move the /kv/ prefix handling into its own function."],
            "read": ["handler.go"],
            "edits": [("handler.go", "\t\tkey := strings.TrimPrefix(r.URL.Path, \"/kv/\")\n\t\tif key == \"\" || key == r.URL.Path {\n",
                       "\t\tkey, ok := keyFrom(r.URL.Path)\n\t\tif !ok {\n"),
                      ("handler.go", "// Handler serves GET", "// keyFrom returns the key in a /kv/{key} path.\n"
                       "func keyFrom(path string) (string, bool) {\n\tkey := strings.TrimPrefix(path, \"/kv/\")\n"
                       "\treturn key, key != \"\" && key != path\n}\n\n// Handler serves GET")],
            "summary": "Key parsing lives in `keyFrom(path) (string, bool)`; the handler just checks `ok`",
        },
        {
            "ask": ["Pull the allowed-methods string into a constant so it can't drift.",
                    "Make \"GET, PUT, DELETE\" a named constant."],
            "read": ["handler.go"],
            "edits": [("handler.go", "const maxValueBytes = 1 << 16\n",
                       "const maxValueBytes = 1 << 16\n\n// allowedMethods is sent in the Allow header of 405 responses.\n"
                       "const allowedMethods = \"GET, PUT, DELETE\"\n"),
                      ("handler.go", 'w.Header().Set("Allow", "GET, PUT, DELETE")', 'w.Header().Set("Allow", allowedMethods)')],
            "summary": "The `Allow` value is the `allowedMethods` constant next to `maxValueBytes`",
        },
        {
            "ask": ["Rename the test helper `do` to `serve`, `do` is too vague.", "The helper in handler_test.go "
                    "should be called serve, not do."],
            "grep": "\\bdo\\(",
            "edits": [("handler_test.go", "do(", "serve(", True)],
            "summary": "The test helper is now `serve` (definition and every call in `handler_test.go`)",
        },
    ],
    "reviews": [
        {
            "ask": ["Review handler.go; it's going to be exposed on our internal network.",
                    "Code review for the HTTP handler, please."],
            "files": ["handler.go"],
            "comments": "1. **Read errors become 413 (line 29).** `err != nil || len(body) > maxValueBytes` "
                        "reports a client disconnect as 'value too large'; handle `err` separately (400).\n"
                        "2. **Keys with slashes.** `/kv/a/b` stores key `a/b`; fine if intended, but say so, since "
                        "it can't be listed or distinguished from nested paths later.\n3. **No Content-Type on "
                        "GET.** `net/http` sniffs one; set `text/plain; charset=utf-8` or `application/octet-"
                        "stream` explicitly so binary values aren't mislabelled.\n4. **Ignored write error** from "
                        "`io.WriteString` (line 26); harmless but worth a comment.\n5. **No auth or size limit "
                        "on the number of keys.** Anyone on the network can fill memory with 64 KiB values.\n\n"
                        "The method switch and the `Allow` header on 405 are correct.",
        },
    ],
    "plans": [
        {
            "ask": ["We want the store to survive restarts by snapshotting to disk. Plan it out, no code yet.",
                    "Plan persistence for the KV store before implementing anything."],
            "explore": [[("read", {"file_path": "store.go"}), ("grep", {"pattern": "NewStore\\("})]],
            "plan": "1. Add `Store.Snapshot(w io.Writer)` and `LoadStore(r io.Reader)` using `encoding/json` of "
                    "the map, taken under the read lock.\n2. Write snapshots atomically: temp file in the same "
                    "directory, `Sync`, then `os.Rename`.\n3. Trigger: a periodic goroutine (every 30s) plus one "
                    "on shutdown via `http.Server.Shutdown` hooks in `main`, not inside the handler.\n4. On "
                    "start, load the snapshot if present; a corrupt file is an error, not an empty store.\n5. "
                    "Tests: round-trip through a `bytes.Buffer`, and load of invalid JSON.\n\nAnything written "
                    "between snapshots is lost on a crash; a write-ahead log would fix that at more complexity.",
            "question": "Is losing up to 30 seconds of writes on a crash acceptable, or do you need every PUT to "
                        "be durable?",
        },
    ],
    "tradeoffs": [
        {
            "ask": ["Should Store use sync.Map instead of a map with an RWMutex?",
                    "Would sync.Map be faster for our store?"],
            "read": ["store.go"],
            "answer": "Probably not worth it. `sync.Map` is optimised for two patterns: keys written once and "
                      "read many times, or goroutines working on disjoint keys. A KV API with arbitrary PUTs "
                      "and DELETEs is neither, and `sync.Map` loses type safety (`any` values) and has no cheap "
                      "length.\n\nThe `RWMutex` version lets readers proceed in parallel and is easy to reason "
                      "about. If profiling ever shows lock contention, sharding the map (N maps with N locks, "
                      "picked by key hash) scales better than `sync.Map` for write-heavy loads.",
        },
    ],
    "extra_features": [
        {
            "ask": ["Add Store.Has(key) bool.", "I need a cheap existence check on Store: Has(key)."],
            "locate": "// Delete removes key",
            "test_file": "handler_test.go",
            "test": "func TestStoreHas(t *testing.T) {\n\ts := NewStore()\n\ts.Set(\"k\", \"\")\n"
                    "\tif !s.Has(\"k\") || s.Has(\"other\") {\n\t\tt.Fatal(\"Has is wrong\")\n\t}\n}\n",
            "impl": [("store.go", "// Delete removes key", "// Has reports whether key is present (even with an empty value).\n"
                      "func (s *Store) Has(key string) bool {\n\t_, ok := s.Get(key)\n\treturn ok\n}\n\n// Delete removes key")],
            "summary": "Added `Store.Has(key)`, built on `Get` so it takes the read lock; an empty value still counts "
                       "as present",
        },
    ],
}
