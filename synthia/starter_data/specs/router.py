"""Scenarios for repos/router (TypeScript, tsc + node --test): a tiny path router with :params."""

MATCH = ("      const params: Params = {};\n      const ok = route.parts.every((p, i) => {\n"
         "        if (!p.startsWith(\":\")) return p === parts[i];\n"
         "        params[p.slice(1)] = decodeURIComponent(parts[i]);\n        return true;\n      });\n"
         "      if (ok) return route.handler(params);\n")

REPO = {
    "name": "router",
    "lang": "typescript",
    "about": "`tiny-router`, a TypeScript request router that matches paths like `/users/:id`",
    "files": {
        "src/router.ts": "the `Router` class: `add(method, pattern, handler)` registers a route, `handle(method, "
                         "path)` returns the first match's result with decoded `:params`, or `undefined`",
        "test/router.test.ts": "node:test tests for params, trailing slashes and method matching",
        "types/node-test.d.ts": "minimal declarations for `node:test` and `node:assert/strict` (no `@types/node`)",
        "package.json": "`test` compiles with `tsc` and runs `node --test` on `dist/test/`",
        "tsconfig.json": "strict settings, NodeNext modules, output in `dist/`",
    },
    "symbols": [
        ("Router", "the router class"),
        ("split", "the private helper that breaks a path into non-empty segments"),
        ("Params", "the type of the decoded path parameters"),
    ],
    "qa": [
        {
            "ask": ["If two routes match the same path, which one wins?", "How does the router pick between overlapping routes?"],
            "calls": [("read", {"file_path": "src/router.ts"})],
            "answer": "The first one registered. `handle` walks `this.routes` in insertion order and returns as "
                      "soon as one matches. So if you add `/users/:id` before `/users/me`, a request for "
                      "`/users/me` goes to the `:id` route with `id = \"me\"`, and the static route is never "
                      "reached. Register static routes first, or change `handle` to prefer routes with fewer "
                      "params.",
        },
        {
            "ask": ["What happens with a request for /users/42/ (trailing slash) or /users//42?",
                    "How are empty path segments treated?"],
            "calls": [("grep", {"pattern": "split\\(", "path": "src/router.ts"}),
                      ("grep", {"pattern": "trailing", "path": "test"})],
            "answer": "Both are normalised away. `split` drops empty segments (`filter((p) => p !== \"\")`), so "
                      "`/users/42/`, `/users//42` and `/users/42` all become `[\"users\", \"42\"]` and match "
                      "`/users/:id`. The test `ignores trailing slashes and decodes params` pins the trailing "
                      "slash case. The flip side is that the router can't distinguish those URLs, which matters "
                      "only if you need strict canonical paths.",
        },
    ],
    "tweaks": [
        {
            "ask": ["Make method matching case-insensitive, so 'get' works like 'GET'.",
                    "handle('get', ...) should match GET routes."],
            "file": "src/router.ts",
            "edits": [("this.routes.push({ method, parts", "this.routes.push({ method: method.toUpperCase(), parts"),
                      ("if (route.method !== method ||", "if (route.method !== method.toUpperCase() ||")],
            "summary": "Methods are upper-cased both when routes are added and when requests are handled",
        },
        {
            "ask": ["Add a `size` getter that returns the number of registered routes.",
                    "I want router.size for a startup log line."],
            "file": "src/router.ts",
            "edits": [("  private routes: Route[] = [];\n", "  private routes: Route[] = [];\n\n"
                       "  get size(): number {\n    return this.routes.length;\n  }\n")],
            "wrong_old": "  private routes = [];\n",
            "summary": "`Router` has a read-only `size` getter with the number of routes",
        },
        {
            "ask": ["Pass params through raw, without decodeURIComponent; the handlers decode themselves.",
                    "Stop decoding path params in the router."],
            "file": "src/router.ts",
            "edits": [("params[p.slice(1)] = decodeURIComponent(parts[i]);", "params[p.slice(1)] = parts[i];")],
            "test_fix": ("test/router.test.ts", 'assert.equal(router.handle("GET", "/users/a%20b/"), "user a b");',
                         'assert.equal(router.handle("GET", "/users/a%20b/"), "user a%20b");'),
            "summary": "Params are passed to handlers exactly as they appear in the path",
        },
        {
            "ask": ["HEAD requests should fall back to GET routes.", "Let handle() serve HEAD with the GET route."],
            "file": "src/router.ts",
            "edits": [("  handle(method: string, path: string): string | undefined {\n    const parts = split(path);\n",
                       "  handle(method: string, path: string): string | undefined {\n"
                       "    if (method === \"HEAD\") method = \"GET\";\n    const parts = split(path);\n")],
            "summary": "`handle` treats `HEAD` as `GET`, so every GET route also answers HEAD",
        },
    ],
    "bugs": [
        {
            "file": "src/router.ts",
            "good": "if (route.method !== method || route.parts.length",
            "bad": "if (route.parts.length",
            "locate": "for \\(const route",
            "report": ["DELETE /users runs the POST handler!", "The 'method must match' test fails."],
            "cause": "the loop no longer compared `route.method` with the request method, so any method matched",
            "review": "Dropping `route.method !== method` means every route matches every method: `DELETE /users` "
                      "now runs the POST handler. That is both a correctness and a security problem.",
            "commit": "Simplify route check",
        },
        {
            "file": "src/router.ts",
            "good": "params[p.slice(1)] = decodeURIComponent(parts[i]);",
            "bad": "params[p.slice(1)] = parts[i];",
            "locate": "const ok = route.parts.every",
            "report": ["Usernames with spaces come through as 'a%20b'.", "npm test: the decodes-params test fails."],
            "cause": "params were stored without `decodeURIComponent`, so percent escapes reached the handlers",
            "review": "Without `decodeURIComponent`, handlers get `a%20b` instead of `a b`; the tests and every "
                      "handler assume decoded params.",
            "commit": "Pass params through",
        },
        {
            "file": "src/router.ts",
            "good": "params[p.slice(1)] = decodeURIComponent",
            "bad": "params[p] = decodeURIComponent",
            "locate": "const ok = route.parts.every",
            "report": ["Handlers get undefined for every param: 'user undefined'.", "p.id is undefined in all handlers."],
            "cause": "params were stored under the raw segment name including the colon (`\":id\"`), so `p.id` was "
                     "undefined",
            "review": "`params[p]` keys the param as `\":id\"`; handlers read `p.id`, which is now always "
                      "`undefined`. Keep `p.slice(1)`.",
            "commit": "Store params by segment",
        },
        {
            "file": "src/router.ts",
            "good": "if (route.method !== method || route.parts.length !== parts.length) continue;",
            "bad": "if (route.method !== method) continue;",
            "locate": "for \\(const route",
            "report": ["GET /users/42/anything is routed to the /users/:id handler.",
                       "Longer paths match shorter routes: /users/1/extra returns 'user 1'."],
            "regression": ("test/router.test.ts",
                           "test(\"extra segments do not match\", () => {\n"
                           "  assert.equal(router.handle(\"GET\", \"/users/42/extra\"), undefined);\n});\n"),
            "cause": "the segment-count check was gone, and `every` only walks the route's own segments, so extra "
                     "path segments were ignored",
            "review": "Without `route.parts.length !== parts.length`, `every` only checks the route's segments, "
                      "so `/users/42/extra` matches `/users/:id`. No test has a longer path, so this passes.",
            "commit": "Relax length check",
        },
    ],
    "features": [
        {
            "ask": ["Add get() and post() shorthands on Router, e.g. router.get('/ping', handler).",
                    "I'd like router.get(pattern, handler) and router.post(...) as sugar over add()."],
            "locate": "  add\\(method",
            "test_file": "test/router.test.ts",
            "test": "test(\"get and post shorthands\", () => {\n"
                    "  const r = new Router().get(\"/ping\", () => \"pong\").post(\"/ping\", () => \"posted\");\n"
                    "  assert.equal(r.handle(\"POST\", \"/ping\"), \"posted\");\n});\n",
            "impl": [("src/router.ts", "  /** The first matching route's result",
                      "  get(pattern: string, handler: Handler): this {\n    return this.add(\"GET\", pattern, handler);\n  }\n\n"
                      "  post(pattern: string, handler: Handler): this {\n    return this.add(\"POST\", pattern, handler);\n  }\n\n"
                      "  /** The first matching route's result")],
            "summary": "`Router.get` and `Router.post` register routes via `add` and return `this` for chaining",
        },
        {
            "ask": ["Static routes should win over param routes regardless of registration order: /users/me before /users/:id."],
            "locate": "    for \\(const route of this.routes\\)",
            "test_file": "test/router.test.ts",
            "test": "test(\"static segments win over params\", () => {\n"
                    "  const r = new Router().add(\"GET\", \"/users/:id\", () => \"param\").add(\"GET\", \"/users/me\", () => \"me\");\n"
                    "  assert.equal(r.handle(\"GET\", \"/users/me\"), \"me\");\n});\n",
            "impl": [("src/router.ts", "    for (const route of this.routes) {\n",
                      "    const byParams = (r: Route) => r.parts.filter((p) => p.startsWith(\":\")).length;\n"
                      "    for (const route of [...this.routes].sort((a, b) => byParams(a) - byParams(b))) {\n")],
            "summary": "`handle` tries routes with fewer `:params` first (a stable sort keeps registration order "
                       "among equals), so `/users/me` beats `/users/:id`",
            "clarify": {
                "vague": ["/users/me is being handled by the /users/:id route. Fix the precedence?",
                          "Route precedence is wrong for /users/me."],
                "question": "Right now the first registered route wins. Do you want static segments to win "
                            "regardless of order (so `/users/me` always beats `/users/:id`), or should I keep "
                            "first-registered-wins and just register `/users/me` earlier? The first changes "
                            "behaviour for any existing overlapping routes.",
                "answer": "Static should win regardless of order.",
            },
        },
        {
            "ask": ["Add `allowed(path)` returning the methods that have a route for that path, for 405 responses.",
                    "Resolve the TODO: I need the list of methods that would match a path."],
            "locate": "function split",
            "test_file": "test/router.test.ts",
            "test": "test(\"allowed lists the methods for a path\", () => {\n"
                    "  assert.deepEqual(router.allowed(\"/users\"), [\"POST\"]);\n"
                    "  assert.deepEqual(router.allowed(\"/nowhere\"), []);\n});\n",
            "impl": [("src/router.ts", "    return undefined;\n  }\n}\n",
                      "    return undefined;\n  }\n\n  /** Methods with a route matching path, e.g. for an Allow header. */\n"
                      "  allowed(path: string): string[] {\n    const methods = this.routes\n"
                      "      .filter((r) => this.handleRoute(r, split(path)) !== undefined)\n"
                      "      .map((r) => r.method);\n    return [...new Set(methods)];\n  }\n\n"
                      "  private handleRoute(route: Route, parts: string[]): Params | undefined {\n"
                      "    if (route.parts.length !== parts.length) return undefined;\n"
                      "    const params: Params = {};\n"
                      "    const ok = route.parts.every((p, i) => !p.startsWith(\":\") ? p === parts[i] : ((params[p.slice(1)] = parts[i]), true));\n"
                      "    return ok ? params : undefined;\n  }\n}\n")],
            "summary": "Added `Router.allowed(path)`, which returns the distinct methods whose routes match the "
                       "path (via a private `handleRoute` matcher)",
        },
    ],
    "refactors": [
        {
            "ask": ["Extract the matching in handle() into a private `match(route, parts)` returning Params or undefined.",
                    "Refactor handle: pull the segment matching into its own method."],
            "read": ["src/router.ts"],
            "edits": [("src/router.ts", MATCH, "      const params = this.match(route, parts);\n"
                       "      if (params) return route.handler(params);\n"),
                      ("src/router.ts", "    return undefined;\n  }\n}\n",
                       "    return undefined;\n  }\n\n  private match(route: Route, parts: string[]): Params | undefined {\n"
                       "    const params: Params = {};\n    const ok = route.parts.every((p, i) => {\n"
                       "      if (!p.startsWith(\":\")) return p === parts[i];\n"
                       "      params[p.slice(1)] = decodeURIComponent(parts[i]);\n      return true;\n    });\n"
                       "    return ok ? params : undefined;\n  }\n}\n")],
            "summary": "`handle` calls a private `match(route, parts)` that returns the decoded params or "
                       "`undefined`",
        },
        {
            "ask": ["Rename the `split` helper to `segments`.", "split() is easily confused with String.split; rename it to segments()."],
            "grep": "split\\(",
            "edits": [("src/router.ts", "parts: split(pattern)", "parts: segments(pattern)"),
                      ("src/router.ts", "const parts = split(path);", "const parts = segments(path);"),
                      ("src/router.ts", "function split(path: string)", "function segments(path: string)")],
            "summary": "The helper is now `segments` (definition and both call sites); `path.split(\"/\")` inside "
                       "it is the string method and stays",
        },
        {
            "ask": ["Make the routes array readonly.", "routes should be `private readonly`."],
            "read": ["src/router.ts"],
            "edits": [("src/router.ts", "  private routes: Route[] = [];", "  private readonly routes: Route[] = [];")],
            "summary": "`routes` is `private readonly`; only the reference is frozen, `add` still pushes to it",
        },
    ],
    "reviews": [
        {
            "ask": ["Review src/router.ts; we're putting it in front of our API.", "Please review the router."],
            "files": ["src/router.ts"],
            "comments": "1. **`decodeURIComponent` can throw (line 28).** A path like `/users/%E0%A4%A` raises "
                        "`URIError` out of `handle`; catch it and treat the route as not matching (or return a "
                        "400 upstream).\n2. **Registration order decides precedence.** `/users/:id` registered "
                        "before `/users/me` shadows it. Either document it or sort static segments first.\n3. "
                        "**No 405 information (line 23 TODO).** Callers can't tell 'no route' from 'wrong "
                        "method'.\n4. **Linear scan** over all routes per request; fine for dozens of routes.\n5. "
                        "**`Params` built even for failed matches**; harmless, but a `match` helper returning "
                        "`undefined` would read better.\n\nSegment counting and trailing-slash handling are "
                        "correct.",
        },
    ],
    "plans": [
        {
            "ask": ["Add middleware support (functions that run before handlers). Plan it before changing code.",
                    "How would you add middleware to the router? Plan only."],
            "explore": [[("read", {"file_path": "src/router.ts"}), ("read", {"file_path": "test/router.test.ts"})]],
            "plan": "1. Define `Middleware = (params: Params, next: () => string) => string`, so middleware can "
                    "short-circuit or wrap the handler's result.\n2. `Router.use(mw)` for global middleware, run "
                    "in registration order around every matched handler.\n3. Optional per-route middleware: "
                    "`add(method, pattern, ...mws, handler)`.\n4. Compose in `handle` only after a route "
                    "matched, so unmatched requests still return `undefined`.\n5. Tests: ordering, "
                    "short-circuiting, and that params reach middleware.",
            "question": "Should middleware also run when no route matches (e.g. for logging 404s)?",
        },
    ],
    "tradeoffs": [
        {
            "ask": ["Should we switch to a radix-tree router like find-my-way?", "Is our linear router going to be a bottleneck?"],
            "read": ["src/router.ts"],
            "answer": "Not at our size. `handle` scans every route and compares segments, so it's O(routes x "
                      "segments) per request: for a few dozen routes that's well under a microsecond, "
                      "negligible next to any real handler.\n\nA radix tree (find-my-way, used by Fastify) "
                      "matters with hundreds of routes or very high request rates, and it brings well-defined "
                      "precedence rules. The cost is a dependency and a different API. I'd switch when the route "
                      "count grows a lot or profiling shows routing in the hot path.",
        },
    ],
}
