"""Scenarios for repos/semver (Rust, cargo test): parsing and ordering MAJOR.MINOR.PATCH versions."""

BUMP = "    pub fn bump_minor(&self) -> Version {\n        Version { major: self.major, minor: self.minor + 1, patch: 0 }\n    }\n"
ORD_IMPLS = ("impl Ord for Version {\n    fn cmp(&self, other: &Self) -> Ordering {\n"
             "        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch))\n    }\n}\n\n"
             "impl PartialOrd for Version {\n    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {\n"
             "        Some(self.cmp(other))\n    }\n}\n")

REPO = {
    "name": "semver",
    "lang": "rust",
    "about": "`semver-lite`, a dependency-free Rust crate that parses and orders `MAJOR.MINOR.PATCH` versions",
    "files": {
        "src/lib.rs": "the `Version` struct with `parse` (accepts a leading `v`), `bump_minor`, and a manual "
                      "`Ord` that compares `(major, minor, patch)` numerically",
        "src/error.rs": "`ParseError` (`WrongPartCount`, `NotANumber`) with its `Display` messages",
        "tests/parse.rs": "integration tests for parsing, ordering and bumping",
        "Cargo.toml": "the crate manifest; there are no dependencies",
    },
    "symbols": [
        ("Version", "the parsed version struct"),
        ("ParseError", "the error enum `Version::parse` returns"),
        ("WrongPartCount", "the `ParseError` variant for input that doesn't have exactly three parts"),
    ],
    "qa": [
        {
            "ask": ["Why does 1.10.0 sort after 1.9.0 here? String comparison would say the opposite.",
                    "How are versions compared in this crate?"],
            "calls": [("read", {"file_path": "src/lib.rs"})],
            "answer": "Because the comparison is numeric, not textual. `parse` turns each part into a `u64`, and "
                      "the manual `Ord` impl compares the tuple `(major, minor, patch)`, so it's 1 = 1, then "
                      "10 > 9. `PartialOrd` just delegates to `cmp`, which keeps `<` consistent with `Ord`.\n\n"
                      "Since the fields are declared in that same order, `#[derive(PartialOrd, Ord)]` would give "
                      "the identical ordering with less code.",
        },
        {
            "ask": ["What errors can Version::parse return, and what do the messages look like?",
                    "List the ways parsing can fail, with the error text users will see."],
            "calls": [("read", {"file_path": "src/error.rs"}), ("read", {"file_path": "src/lib.rs", "limit": 26})],
            "answer": "Two variants of `ParseError`:\n\n- `WrongPartCount(n)`: the input (after trimming and "
                      "stripping a leading `v`) doesn't split into exactly three dot-separated parts. Message: "
                      "`expected 3 dot-separated parts, got 2`.\n- `NotANumber(s)`: a part isn't a valid `u64`, "
                      "including empty parts and negative numbers. Message: `not a number: \"x\"` (the part is "
                      "`Debug`-quoted).\n\nA pre-release like `1.0.0-beta` ends up as `NotANumber(\"0-beta\")`, "
                      "which is a confusing message for that case.",
        },
    ],
    "tweaks": [
        {
            "ask": ["Change the part-count error to read 'expected MAJOR.MINOR.PATCH, got N part(s)'.",
                    "Reword WrongPartCount's message: 'expected MAJOR.MINOR.PATCH, got 2 part(s)'."],
            "file": "src/error.rs",
            "edits": [('write!(f, "expected 3 dot-separated parts, got {}", n)',
                       'write!(f, "expected MAJOR.MINOR.PATCH, got {} part(s)", n)')],
            "wrong_old": 'write!(f, "expected 3 parts, got {}", n)',
            "summary": "`ParseError::WrongPartCount` now displays as `expected MAJOR.MINOR.PATCH, got N part(s)`",
        },
        {
            "ask": ["Accept an uppercase V prefix too, like V1.2.3.", "Version::parse should also take 'V1.2.3'."],
            "file": "src/lib.rs",
            "edits": [("let text = text.trim().trim_start_matches('v');",
                       "let text = text.trim().trim_start_matches(|c| c == 'v' || c == 'V');")],
            "summary": "`Version::parse` strips a leading `v` or `V`",
        },
        {
            "ask": ["Derive Hash for Version, I want to put versions in a HashSet.",
                    "Make Version hashable."],
            "file": "src/lib.rs",
            "edits": [("#[derive(Debug, Clone, PartialEq, Eq)]", "#[derive(Debug, Clone, PartialEq, Eq, Hash)]")],
            "wrong_old": "#[derive(Debug, Clone, PartialEq)]",
            "summary": "`Version` now derives `Hash`, consistent with its derived `Eq`",
        },
        {
            "ask": ["Stop accepting a 'v' prefix. Versions in our manifests must be bare numbers.",
                    "Version::parse should reject 'v1.2.3'; only plain 1.2.3 is valid for us."],
            "file": "src/lib.rs",
            "edits": [("let text = text.trim().trim_start_matches('v');", "let text = text.trim();")],
            "test_fix": ("tests/parse.rs", "fn accepts_leading_v() {\n    assert_eq!(Version::parse(\"v2.0.1\").unwrap().major, 2);",
                         "fn rejects_leading_v() {\n    assert!(Version::parse(\"v2.0.1\").is_err());"),
            "summary": "`Version::parse(\"v2.0.1\")` is now an error (`NotANumber(\"v2\")`)",
        },
    ],
    "bugs": [
        {
            "file": "src/lib.rs",
            "good": "(self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch))",
            "bad": "(self.major, self.patch, self.minor).cmp(&(other.major, other.patch, other.minor))",
            "locate": "fn cmp",
            "report": ["Sorting is broken: 1.2.9 comes out newer than 1.10.0.",
                       "cargo test fails in orders_by_minor_before_patch."],
            "cause": "`Ord::cmp` compared the tuple `(major, patch, minor)`, so the patch number outranked the "
                     "minor one",
            "review": "The tuple order is now `(major, patch, minor)`, so 1.2.9 sorts above 1.10.0. Precedence "
                      "must be major, then minor, then patch; `orders_by_minor_before_patch` fails with this.",
            "commit": "Reorder comparison fields",
        },
        {
            "file": "src/lib.rs",
            "good": "minor: self.minor + 1, patch: 0 }",
            "bad": "minor: self.minor + 1, patch: self.patch }",
            "locate": "fn bump_minor",
            "report": ["bump_minor on 0.3.7 gives 0.4.7. Shouldn't it be 0.4.0?",
                       "The bump_minor test is failing."],
            "cause": "`bump_minor` carried the old `patch` over instead of resetting it to 0",
            "review": "`patch: self.patch` keeps the patch number across a minor bump (0.3.7 becomes 0.4.7). "
                      "SemVer resets patch to 0 when minor increases.",
            "commit": "Keep patch on minor bump",
        },
        {
            "file": "src/lib.rs",
            "good": "let text = text.trim().trim_start_matches('v');",
            "bad": "let text = text.trim();",
            "locate": "fn parse",
            "report": ["Tags like v2.0.1 don't parse any more.",
                       "accepts_leading_v is failing after my cleanup."],
            "cause": "`parse` no longer stripped the leading `v`, so `v2` hit the number parser",
            "review": "Dropping `.trim_start_matches('v')` breaks every git-tag style version (`v2.0.1` now fails "
                      "with `NotANumber(\"v2\")`), and `accepts_leading_v` documents that as supported.",
            "commit": "Only trim whitespace",
        },
        {
            "file": "src/lib.rs",
            "good": "if parts.len() != 3 {",
            "bad": "if parts.len() < 3 {",
            "report": ["Version::parse(\"1.2.3.4\") returns Ok(1.2.3) instead of an error.",
                       "We accidentally accepted a four-part version string; parse should have rejected it."],
            "locate": "parts.len",
            "regression": ("tests/parse.rs",
                           "#[test]\nfn rejects_four_parts() {\n"
                           "    assert_eq!(Version::parse(\"1.2.3.4\"), Err(ParseError::WrongPartCount(4)));\n}\n"),
            "cause": "the length check was `parts.len() < 3`, so extra parts passed the check and were ignored",
            "review": "`parts.len() < 3` lets `1.2.3.4` through: the fourth part is silently ignored. The check "
                      "must stay `!= 3`. No test covers too many parts, so the suite stays green.",
            "commit": "Relax part count check",
        },
    ],
    "features": [
        {
            "ask": ["Add Version::bump_major: increments major and resets minor and patch.",
                    "We need bump_major() next to bump_minor()."],
            "locate": "pub fn bump_minor",
            "test_file": "tests/parse.rs",
            "test": "#[test]\nfn bump_major_resets_the_rest() {\n    let v = Version::parse(\"1.4.2\").unwrap().bump_major();\n"
                    "    assert_eq!(v, Version { major: 2, minor: 0, patch: 0 });\n}\n",
            "impl": [("src/lib.rs", BUMP, BUMP + "\n    pub fn bump_major(&self) -> Version {\n"
                      "        Version { major: self.major + 1, minor: 0, patch: 0 }\n    }\n")],
            "summary": "Added `Version::bump_major()`, which returns `major + 1` with minor and patch reset to 0",
        },
        {
            "ask": ["Implement Display for Version so to_string() gives '1.4.2' (no v prefix).",
                    "I want `format!(\"{}\", version)` to print 1.4.2."],
            "locate": "impl Ord for Version",
            "test_file": "tests/parse.rs",
            "test": "#[test]\nfn displays_without_prefix() {\n"
                    "    assert_eq!(Version::parse(\"v1.4.2\").unwrap().to_string(), \"1.4.2\");\n}\n",
            "impl": [("src/lib.rs", "impl Ord for Version {\n",
                      "impl std::fmt::Display for Version {\n"
                      "    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {\n"
                      "        write!(f, \"{}.{}.{}\", self.major, self.minor, self.patch)\n    }\n}\n\n"
                      "impl Ord for Version {\n")],
            "summary": "`Version` implements `Display` as `MAJOR.MINOR.PATCH`, so `to_string()` and `{}` work",
        },
        {
            "locate": "pub fn bump_minor",
            "ask": ["Add `matches_caret(&self, req)` with Cargo's caret rules: ^1.2.3 accepts >=1.2.3 <2.0.0, "
                    "and ^0.2.3 accepts >=0.2.3 <0.3.0."],
            "test_file": "tests/parse.rs",
            "test": "#[test]\nfn caret_matching() {\n    let req = Version::parse(\"1.2.3\").unwrap();\n"
                    "    assert!(Version::parse(\"1.9.0\").unwrap().matches_caret(&req));\n"
                    "    assert!(!Version::parse(\"2.0.0\").unwrap().matches_caret(&req));\n"
                    "    let zero = Version::parse(\"0.2.3\").unwrap();\n"
                    "    assert!(!Version::parse(\"0.3.0\").unwrap().matches_caret(&zero));\n}\n",
            "impl": [("src/lib.rs", BUMP, BUMP + "\n    /// Cargo's caret rule: same major (same minor while major is 0), "
                      "and not older.\n    pub fn matches_caret(&self, req: &Version) -> bool {\n"
                      "        let same_line = if req.major > 0 {\n            self.major == req.major\n"
                      "        } else {\n            self.major == 0 && self.minor == req.minor\n        };\n"
                      "        same_line && self >= req\n    }\n")],
            "summary": "Added `Version::matches_caret(&req)`: same major (or same minor while major is 0) and "
                       "not older than `req`",
            "clarify": {
                "vague": ["We need to check versions against requirements like in Cargo.toml.",
                          "Can this crate tell whether a version satisfies a requirement?"],
                "question": "Which requirement syntax do you need? Cargo has caret (`^1.2`, the default), tilde "
                            "(`~1.2`), wildcards and comparison ranges, and each is a separate piece of work. Also, "
                            "for caret: should `0.x` follow Cargo's stricter rule, where `^0.2.3` excludes 0.3.0?",
                "answer": "Caret only for now, with Cargo's 0.x rule.",
            },
        },
    ],
    "refactors": [
        {
            "ask": ["Turn the `num` closure in Version::parse into a private `parse_part` function.",
                    "Refactor: replace the closure in parse() with a named helper fn."],
            "read": ["src/lib.rs"],
            "edits": [("src/lib.rs",
                       "        let num = |s: &str| s.parse::<u64>().map_err(|_| ParseError::NotANumber(s.to_string()));\n"
                       "        Ok(Version { major: num(parts[0])?, minor: num(parts[1])?, patch: num(parts[2])? })\n",
                       "        Ok(Version {\n            major: parse_part(parts[0])?,\n"
                       "            minor: parse_part(parts[1])?,\n            patch: parse_part(parts[2])?,\n        })\n"),
                      ("src/lib.rs", "impl Ord for Version {\n",
                       "fn parse_part(s: &str) -> Result<u64, ParseError> {\n"
                       "    s.parse::<u64>().map_err(|_| ParseError::NotANumber(s.to_string()))\n}\n\n"
                       "impl Ord for Version {\n")],
            "summary": "The closure is now a private `parse_part(&str) -> Result<u64, ParseError>` function",
        },
        {
            "ask": ["The hand-written Ord/PartialOrd impls just compare fields in order. Replace them with derives.",
                    "Can we derive the ordering for Version instead of implementing it by hand?"],
            "read": ["src/lib.rs"],
            "edits": [("src/lib.rs", "#[derive(Debug, Clone, PartialEq, Eq)]",
                       "#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]"),
                      ("src/lib.rs", "\n" + ORD_IMPLS, ""),
                      ("src/lib.rs", "use std::cmp::Ordering;\n", "")],
            "summary": "`Version` derives `PartialOrd` and `Ord`; derived ordering is lexicographic in field "
                       "order (major, minor, patch), which is what the manual impls did, so `Ordering` is no "
                       "longer imported",
        },
        {
            "ask": ["Rename ParseError::WrongPartCount to WrongNumberOfParts everywhere.",
                    "WrongPartCount reads oddly; rename the variant to WrongNumberOfParts."],
            "grep": "WrongPartCount",
            "edits": [("src/error.rs", "WrongPartCount", "WrongNumberOfParts", True),
                      ("src/lib.rs", "WrongPartCount", "WrongNumberOfParts"),
                      ("tests/parse.rs", "WrongPartCount", "WrongNumberOfParts")],
            "summary": "`ParseError::WrongPartCount` is now `WrongNumberOfParts` in the enum, its `Display` arm, "
                       "`parse` and the test. It's a public variant, so this is a breaking change for users "
                       "matching on it",
        },
    ],
    "reviews": [
        {
            "ask": ["Please review src/lib.rs before we publish 0.3.", "Code review of the parser, please."],
            "files": ["src/lib.rs"],
            "comments": "1. **Pre-releases (line 17 TODO).** `1.0.0-beta.1` fails with `NotANumber(\"0-beta\")`. "
                        "If that stays unsupported for 0.3, give it its own error so the message makes sense.\n"
                        "2. **Leading zeros.** `01.2.3` parses as 1.2.3; SemVer forbids leading zeros. Decide "
                        "whether to be strict.\n3. **`trim_start_matches('v')` (line 18)** strips any number of "
                        "`v`s, so `vvv1.2.3` is accepted. `strip_prefix('v').unwrap_or(text)` strips at most one.\n"
                        "4. **Manual `Ord` (lines 32-42)** matches what `#[derive(PartialOrd, Ord)]` gives for this "
                        "field order; deriving removes code that could drift.\n5. **Only `bump_minor`.** "
                        "`bump_major`/`bump_patch` would make the API symmetric.\n\nError handling is otherwise "
                        "good: no panics on bad input, and overflow becomes `NotANumber`.",
        },
    ],
    "plans": [
        {
            "ask": ["We need pre-release versions (1.0.0-beta.2) with correct SemVer precedence. Plan it first.",
                    "Plan how to add pre-release support. Don't write code yet."],
            "explore": [[("read", {"file_path": "src/lib.rs"}), ("read", {"file_path": "src/error.rs"})]],
            "plan": "1. Add `pub pre: Vec<Identifier>` to `Version`, where `Identifier` is `Numeric(u64)` or "
                    "`Alpha(String)`.\n2. In `parse`, split once on `-` before splitting the core on `.`; keep "
                    "the three-part check for the core.\n3. Replace the manual `Ord`: a version with a "
                    "pre-release sorts before the same core without one; identifiers compare numerically when both "
                    "are numeric, and numeric sorts before alphanumeric.\n4. New `ParseError::InvalidPreRelease` "
                    "for empty identifiers (`1.0.0-`, `1.0.0-a..b`).\n5. Tests from the SemVer spec's precedence "
                    "example: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta < 1.0.0-rc.1 < 1.0.0.\n\nAdding a public "
                    "field breaks struct-literal construction, so this is a 0.x minor bump.",
            "question": "Should build metadata (`+sha.5114f85`) be accepted and ignored at the same time?",
        },
    ],
    "tradeoffs": [
        {
            "ask": ["Should we just depend on the semver crate instead of maintaining this?",
                    "Is there any reason to keep semver-lite rather than using the `semver` crate?"],
            "read": ["Cargo.toml"],
            "answer": "For most uses, switch to `semver`. It implements the full spec (pre-release, build "
                      "metadata, every requirement operator), is what Cargo itself uses, and has optional serde "
                      "support.\n\nReasons to keep this crate: zero dependencies (the manifest above has none), a "
                      "tiny API that's easy to audit, and faster builds in constrained environments. Those matter "
                      "only if you're deliberately avoiding dependencies; if you'll need pre-releases or "
                      "requirement matching beyond caret, reimplementing them here would cost far more than "
                      "the dependency.",
        },
    ],
    "extra_features": [
        {
            "ask": ["Add Version::bump_patch.", "We're missing bump_patch(); add it next to bump_minor."],
            "locate": "pub fn bump_minor",
            "test_file": "tests/parse.rs",
            "test": "#[test]\nfn bump_patch_increments_patch() {\n"
                    "    assert_eq!(Version::parse(\"1.4.2\").unwrap().bump_patch().patch, 3);\n}\n",
            "impl": [("src/lib.rs", BUMP, BUMP + "\n    pub fn bump_patch(&self) -> Version {\n"
                      "        Version { patch: self.patch + 1, ..self.clone() }\n    }\n")],
            "summary": "Added `Version::bump_patch()`, which copies the version with `patch + 1`",
        },
    ],
}
