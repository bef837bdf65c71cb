"""Scenarios for repos/querystring (TypeScript, tsc + node --test): query-string parse/stringify."""

REPO = {
    "name": "querystring",
    "lang": "typescript",
    "about": "`qs-lite`, a TypeScript library that parses and builds URL query strings",
    "history": [("Add stringify", ["src/stringify.ts"])],
    "files": {
        "src/parse.ts": "`parse(input)`: splits on `&`, decodes `+` and percent escapes, and collects repeated "
                        "keys into arrays; also exports the `Query` type",
        "src/stringify.ts": "`stringify(query)`: the inverse, with keys sorted for stable output",
        "test/parse.test.ts": "node:test tests for both functions, compiled by `tsc` before running",
        "types/node-test.d.ts": "minimal type declarations for `node:test` and `node:assert/strict`, since "
                                "the project has no `@types/node`",
        "package.json": "scripts: `build` runs `tsc`, `test` runs `tsc` and then `node --test` on `dist/test/`",
        "tsconfig.json": "strict compiler settings, NodeNext modules, output in `dist/`",
    },
    "symbols": [
        ("Query", "the type of a parsed query: `Record<string, string | string[]>`"),
        ("decode", "the private helper that turns `+` into spaces and decodes percent escapes"),
        ("stringify", "the function that turns a `Query` back into a string"),
    ],
    "qa": [
        {
            "ask": ["What does parse(\"a=1&a=2&b\") return?", "How are repeated keys and keys without '=' handled?"],
            "calls": [("read", {"file_path": "src/parse.ts"})],
            "answer": "`{ a: [\"1\", \"2\"], b: \"\" }`. The first `a` is stored as a string; the second turns it "
                      "into an array (`[previous, value]`), and later ones are pushed onto it. A pair without `=` "
                      "gets the empty string as its value.\n\nSo the type of a key depends on how often it "
                      "appeared, which callers must handle (`string | string[]`). The TODO in the file is about "
                      "`a[]=1`, which would let a single value still come back as an array.",
        },
        {
            "ask": ["How do the tests run? I don't see ts-node or jest.",
                    "Walk me through what `npm test` actually does here."],
            "calls": [("read", {"file_path": "package.json"}), ("read", {"file_path": "tsconfig.json"}),
                      ("list_dir", {"path": "types"})],
            "answer": "`npm test` runs `tsc && node --test --test-reporter=dot dist/test/`:\n\n1. `tsc` compiles "
                      "`src/`, `test/` and `types/` into `dist/` with the strict settings in `tsconfig.json` "
                      "(NodeNext modules, which is why imports end in `.js`).\n2. If that succeeds, Node's "
                      "built-in test runner runs the compiled tests in `dist/test/` and prints one dot per "
                      "passing test.\n\nNo ts-node or jest is needed. Type errors fail the run before any test "
                      "executes, and `types/node-test.d.ts` stands in for `@types/node`.",
        },
    ],
    "tweaks": [
        {
            "ask": ["Accept ';' as a pair separator too, like some old servers send.",
                    "parse should split on both & and ;."],
            "file": "src/parse.ts",
            "edits": [('for (const pair of text.split("&")) {', "for (const pair of text.split(/[&;]/)) {")],
            "wrong_old": "for (const pair of text.split('&')) {",
            "summary": "`parse` now splits pairs on `&` or `;`",
        },
        {
            "ask": ["parse should ignore surrounding whitespace in the input.", "Trim the input in parse() first."],
            "file": "src/parse.ts",
            "edits": [('const text = input.startsWith("?") ? input.slice(1) : input;',
                       'const trimmed = input.trim();\n  const text = trimmed.startsWith("?") ? trimmed.slice(1) : trimmed;')],
            "summary": "`parse` trims the input before stripping the leading `?`",
        },
        {
            "ask": ["Keep insertion order in stringify instead of sorting keys.",
                    "Don't sort keys in stringify any more; we want the order they were added in."],
            "file": "src/stringify.ts",
            "edits": [("for (const key of Object.keys(query).sort()) {", "for (const key of Object.keys(query)) {"),
                      ("/** Inverse of parse: keys are sorted so the output is stable. */",
                       "/** Inverse of parse: keys keep their insertion order. */")],
            "test_fix": ("test/parse.test.ts", 'assert.equal(stringify({ b: ["1", "2"], a: "x y" }), "a=x%20y&b=1&b=2");',
                         'assert.equal(stringify({ b: ["1", "2"], a: "x y" }), "b=1&b=2&a=x%20y");'),
            "summary": "`stringify` keeps the keys' insertion order (doc comment updated)",
        },
        {
            "ask": ["Encode spaces as '+' in stringify, that's what our backend expects.",
                    "stringify should produce `a=x+y` rather than `a=x%20y`."],
            "file": "src/stringify.ts",
            "edits": [("pairs.push(`${encodeURIComponent(key)}=${encodeURIComponent(v)}`);",
                       "pairs.push(`${encode(key)}=${encode(v)}`);"),
                      ("/** Inverse of parse", "function encode(part: string): string {\n"
                       "  return encodeURIComponent(part).replace(/%20/g, \"+\");\n}\n\n/** Inverse of parse")],
            "test_fix": ("test/parse.test.ts", '"a=x%20y&b=1&b=2"', '"a=x+y&b=1&b=2"'),
            "summary": "`stringify` encodes spaces as `+` through a small `encode` helper; `parse` already "
                       "decodes `+`, so round trips still work",
        },
    ],
    "bugs": [
        {
            "file": "src/parse.ts",
            "good": 'return decodeURIComponent(part.replace(/\\+/g, " "));',
            "bad": "return decodeURIComponent(part);",
            "locate": "function decode",
            "report": ["Search terms arrive with literal plus signs: 'hello+world' instead of 'hello world'.",
                       "npm test fails in 'decodes plus signs and percent escapes'."],
            "cause": "`decode` no longer replaced `+` with a space before `decodeURIComponent`, and form encoding "
                     "uses `+` for spaces",
            "review": "Dropping `.replace(/\\+/g, \" \")` breaks form-encoded input: browsers send spaces as `+`, "
                      "and `decodeURIComponent` leaves `+` alone.",
            "commit": "Use plain decodeURIComponent",
        },
        {
            "file": "src/parse.ts",
            "good": "else query[key] = [previous, value];",
            "bad": "else query[key] = value;",
            "locate": "const previous",
            "report": ["Repeated keys lose values: ?tag=x&tag=y&tag=z gives only the last two.",
                       "The 'collects repeated keys into arrays' test fails."],
            "cause": "on the second occurrence of a key, `parse` overwrote the value instead of turning it into "
                     "`[previous, value]`",
            "review": "Assigning `value` on the second occurrence discards the first; only from the third "
                      "occurrence on does the array branch kick in, so `tag=x&tag=y&tag=z` loses `x`.",
            "commit": "Simplify duplicate handling",
        },
        {
            "file": "src/stringify.ts",
            "good": "Object.keys(query).sort()",
            "bad": "Object.keys(query)",
            "locate": "Object.keys",
            "report": ["stringify output isn't stable any more; our cache keys change between requests.",
                       "The stringify test is failing: keys come out unsorted."],
            "cause": "`stringify` iterated `Object.keys(query)` without `.sort()`, so the order depended on "
                     "insertion order",
            "review": "Without `.sort()`, the output depends on insertion order, but the doc comment promises "
                      "stable output and callers use it as a cache key.",
            "commit": "Skip sorting",
        },
        {
            "file": "src/parse.ts",
            "good": '    if (pair === "") continue;\n',
            "bad": "",
            "fix": ("  for (const pair of text.split(\"&\")) {\n", "  for (const pair of text.split(\"&\")) {\n"
                    "    if (pair === \"\") continue;\n"),
            "locate": "for \\(const pair",
            "report": ["parse(\"a=1&&b=2\") returns an extra empty-string key.",
                       "Double ampersands produce a '' key in the parsed query."],
            "regression": ("test/parse.test.ts",
                           "test(\"skips empty pairs\", () => {\n"
                           "  assert.deepEqual(parse(\"a=1&&b=2&\"), { a: \"1\", b: \"2\" });\n});\n"),
            "cause": "the loop no longer skipped empty pairs, so `&&` or a trailing `&` produced a key `\"\"`",
            "review": "Removing `if (pair === \"\") continue;` turns `a=1&&b=2` or a trailing `&` into an extra "
                      "`\"\"` key. No test has an empty pair, so nothing fails.",
            "commit": "Remove empty-pair check",
        },
    ],
    "features": [
        {
            "ask": ["Add `first(query, key)` that returns the first value for a key (or undefined).",
                    "I keep writing Array.isArray checks. Add a helper `first(query, key): string | undefined`."],
            "locate": "function decode",
            "test_file": "test/parse.test.ts",
            "test_import": ('import { parse } from "../src/parse.js";', 'import { first, parse } from "../src/parse.js";'),
            "test": "test(\"first returns the first value\", () => {\n"
                    "  const q = parse(\"a=1&a=2&b=3\");\n"
                    "  assert.deepEqual([first(q, \"a\"), first(q, \"b\"), first(q, \"c\")], [\"1\", \"3\", undefined]);\n});\n",
            "impl": [("src/parse.ts", "function decode(", "/** The first value for key, whether it was repeated or not. */\n"
                      "export function first(query: Query, key: string): string | undefined {\n"
                      "  const value = query[key];\n  return Array.isArray(value) ? value[0] : value;\n}\n\n"
                      "function decode(")],
            "summary": "Added `first(query, key)` in `src/parse.ts`, returning the first value or `undefined`",
        },
        {
            "ask": ["parse should support the `tag[]=x` syntax: keys ending in [] always give arrays (TODO in parse.ts)."],
            "locate": "// TODO: support the a\\[\\]=1",
            "test_file": "test/parse.test.ts",
            "test": "test(\"bracket keys always give arrays\", () => {\n"
                    "  assert.deepEqual(parse(\"tag[]=x&id=1\"), { tag: [\"x\"], id: \"1\" });\n});\n",
            "impl": [("src/parse.ts", "    // TODO: support the a[]=1 array syntax\n"
                                      "    const key = decode(eq === -1 ? pair : pair.slice(0, eq));\n",
                      "    const rawKey = decode(eq === -1 ? pair : pair.slice(0, eq));\n"
                      "    const isList = rawKey.endsWith(\"[]\");\n    const key = isList ? rawKey.slice(0, -2) : rawKey;\n"),
                     ("src/parse.ts", "    if (previous === undefined) query[key] = value;\n",
                      "    if (previous === undefined) query[key] = isList ? [value] : value;\n")],
            "summary": "A key ending in `[]` has the brackets stripped and always produces an array, even with one "
                       "value",
            "clarify": {
                "vague": ["We need array support in query strings.", "Can qs-lite do arrays properly?"],
                "question": "Repeated keys already become arrays, but a single `tag=x` stays a string. Which "
                            "syntax do you want for explicit arrays: `tag[]=x` (PHP/Rails style), or also nested "
                            "objects like `a[b]=1`? Nested objects would change the `Query` type.",
                "answer": "Just `tag[]=x` for arrays. No nested objects.",
            },
        },
        {
            "ask": ["Add an options argument to stringify: `{ skipEmpty: true }` leaves out keys whose value is ''.",
                    "stringify(query, { skipEmpty: true }) should drop empty values."],
            "locate": "export function stringify",
            "test_file": "test/parse.test.ts",
            "test": "test(\"stringify can skip empty values\", () => {\n"
                    "  assert.equal(stringify({ a: \"\", b: \"1\" }, { skipEmpty: true }), \"b=1\");\n});\n",
            "impl": [("src/stringify.ts", "export function stringify(query: Query): string {",
                      "export function stringify(query: Query, options: { skipEmpty?: boolean } = {}): string {"),
                     ("src/stringify.ts", "    for (const v of Array.isArray(value) ? value : [value]) {\n",
                      "    for (const v of Array.isArray(value) ? value : [value]) {\n"
                      "      if (options.skipEmpty && v === \"\") continue;\n")],
            "summary": "`stringify(query, { skipEmpty: true })` leaves out empty values; the default is unchanged",
        },
    ],
    "refactors": [
        {
            "ask": ["Rename the private `decode` helper in parse.ts to `decodeComponent`.",
                    "decode is a vague name; call it decodeComponent."],
            "grep": "decode\\(",
            "edits": [("src/parse.ts", "decode(", "decodeComponent(", True)],
            "summary": "`decode` is now `decodeComponent` (definition and both call sites); it isn't exported",
        },
        {
            "ask": ["Extract the 'add a value to the query' logic in parse into an `addValue` function.",
                    "Refactor parse: move the repeated-key handling into a helper."],
            "read": ["src/parse.ts"],
            "edits": [("src/parse.ts", "    const previous = query[key];\n    if (previous === undefined) query[key] = value;\n"
                                       "    else if (Array.isArray(previous)) previous.push(value);\n"
                                       "    else query[key] = [previous, value];\n",
                       "    addValue(query, key, value);\n"),
                      ("src/parse.ts", "function decode(", "function addValue(query: Query, key: string, value: string): void {\n"
                       "  const previous = query[key];\n  if (previous === undefined) query[key] = value;\n"
                       "  else if (Array.isArray(previous)) previous.push(value);\n  else query[key] = [previous, value];\n}\n\n"
                       "function decode(")],
            "summary": "The repeated-key logic moved into `addValue(query, key, value)`; `parse` just calls it",
        },
        {
            "ask": ["Rewrite stringify with flatMap instead of pushing into an array.",
                    "Make stringify a single expression with flatMap/map/join."],
            "read": ["src/stringify.ts"],
            "edits": [("src/stringify.ts", "  const pairs: string[] = [];\n  for (const key of Object.keys(query).sort()) {\n"
                                           "    const value = query[key];\n    for (const v of Array.isArray(value) ? value : [value]) {\n"
                                           "      pairs.push(`${encodeURIComponent(key)}=${encodeURIComponent(v)}`);\n    }\n  }\n"
                                           "  return pairs.join(\"&\");\n",
                       "  return Object.keys(query)\n    .sort()\n    .flatMap((key) => ([] as string[]).concat(query[key])"
                       ".map((v) => `${encodeURIComponent(key)}=${encodeURIComponent(v)}`))\n    .join(\"&\");\n")],
            "summary": "`stringify` is one `sort`/`flatMap`/`join` chain; output is identical",
        },
    ],
    "reviews": [
        {
            "ask": ["Review src/parse.ts please; it handles untrusted input from URLs.",
                    "Security-minded review of the query parser?"],
            "files": ["src/parse.ts"],
            "comments": "1. **Malformed escapes throw (line 22).** `decodeURIComponent(\"%E0%A4%A\")` raises "
                        "`URIError`, so one bad parameter makes the whole parse fail. Catch it and keep the raw "
                        "text, or skip the pair.\n2. **Prototype keys.** `query` is a plain object, so a key like "
                        "`__proto__` is assigned through the setter instead of becoming a property. Create it with "
                        "`Object.create(null)` or use a `Map`.\n3. **Unbounded arrays.** `a=1&a=2&...` grows without "
                        "limit; consider a cap on pairs for request handling.\n4. **`string | string[]`** forces "
                        "every caller to branch; a `first()` helper or always-array option would help.\n\nThe `+` "
                        "handling and the optional leading `?` are right.",
        },
    ],
    "plans": [
        {
            "ask": ["We want to publish this as an npm package with type declarations. What needs to happen? Plan only.",
                    "Plan the work to publish qs-lite to npm. Don't change anything yet."],
            "explore": [[("read", {"file_path": "package.json"}), ("read", {"file_path": "tsconfig.json"}),
                         ("list_dir", {"path": "."})]],
            "plan": "1. Split the build: a `tsconfig.build.json` that compiles only `src/` with `declaration: "
                    "true`, so tests and `types/` stay out of the package.\n2. `package.json`: drop `private`, add "
                    "`exports` (`./dist/src/index.js` with its `.d.ts`), `types`, `files: [\"dist/src\"]`, "
                    "`engines`, a license and a repository field.\n3. Add `src/index.ts` re-exporting `parse`, "
                    "`stringify` and `Query`, so there's one entry point.\n4. A `prepublishOnly` script running "
                    "`npm test` and the build.\n5. Check the tarball with `npm pack --dry-run` before the first "
                    "publish.",
            "question": "Do you also need CommonJS consumers (`require`), or is ESM-only acceptable?",
        },
    ],
    "tradeoffs": [
        {
            "ask": ["Why not just use URLSearchParams?", "Is there any reason to keep qs-lite instead of URLSearchParams?"],
            "read": ["src/parse.ts"],
            "answer": "`URLSearchParams` is built in and handles decoding (including `+`), so for simple cases "
                      "it's the better choice. What qs-lite adds:\n\n- **A plain object result** with repeated "
                      "keys collected into arrays, where `URLSearchParams` needs `getAll()` per key.\n- **Sorted, "
                      "stable `stringify`** for cache keys; `URLSearchParams.toString()` keeps insertion order "
                      "unless you call `sort()`.\n\nBoth are small conveniences. If those are all you use, a "
                      "ten-line wrapper around `URLSearchParams` would replace this package and drop the custom "
                      "decoding code.",
        },
    ],
}
