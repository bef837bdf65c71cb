"""Scenarios for repos/wordfreq (Rust, cargo test): a word-frequency library and CLI."""

TOP_SORT = "    pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));\n"

REPO = {
    "name": "wordfreq",
    "lang": "rust",
    "about": "`wordfreq`, a Rust command-line tool (plus library) that prints the most frequent words read "
             "from stdin",
    "history": [("Add the wordfreq binary", ["src/main.rs"])],
    "files": {
        "src/lib.rs": "`words` (lowercased runs of letters, digits and apostrophes), `count` (a `HashMap` of "
                      "frequencies) and `top_n` (most frequent first, ties alphabetical)",
        "src/main.rs": "the binary: reads stdin, takes an optional count N as its first argument (default 10) "
                       "and prints right-aligned counts",
        "tests/count.rs": "integration tests for splitting, apostrophes and tie-breaking",
        "Cargo.toml": "the manifest; the lib and bin skip their empty unit-test harnesses",
    },
    "symbols": [
        ("top_n", "the function that sorts and truncates the counts"),
        ("words", "the tokenizer that splits text into lowercased words"),
        ("count", "the function that builds the frequency map"),
    ],
    "qa": [
        {
            "ask": ["How are ties ordered in top_n? Is the output deterministic?",
                    "If two words have the same count, which comes first?"],
            "calls": [("read", {"file_path": "src/lib.rs"})],
            "answer": "Deterministic: `top_n` sorts by count descending and then by the word ascending "
                      "(`b.1.cmp(&a.1).then(a.0.cmp(&b.0))`), so equal counts come out alphabetically. That "
                      "matters because `count` returns a `HashMap`, whose iteration order is random per run; the "
                      "full sort key removes that randomness before `truncate(n)`.\n\nNote the alphabetical "
                      "order is by Unicode code point, not locale-aware, so `Zebra` (if it weren't lowercased) "
                      "would sort before `apple`.",
        },
        {
            "ask": ["How does the CLI decide how many words to print? What if I pass garbage?",
                    "What does `wordfreq abc` do?"],
            "calls": [("read", {"file_path": "src/main.rs"})],
            "answer": "The first argument is parsed as a number: `args().nth(1).and_then(|s| s.parse().ok())"
                      ".unwrap_or(10)`. Missing or unparsable means 10, silently, so `wordfreq abc` prints the "
                      "top 10 with no warning. Extra arguments are ignored (the TODO notes that file arguments "
                      "aren't supported yet). Non-UTF-8 input panics via `expect(\"stdin is not UTF-8\")`.",
        },
    ],
    "tweaks": [
        {
            "ask": ["Change the default number of words from 10 to 20.",
                    "wordfreq with no argument should print 20 words."],
            "file": "src/main.rs",
            "edits": [(".unwrap_or(10);", ".unwrap_or(20);")],
            "wrong_old": ".unwrap_or(10usize);",
            "summary": "With no (or an unparsable) argument, `wordfreq` now prints the top 20 words",
        },
        {
            "ask": ["Make the output tab-separated (word, tab, count) so I can pipe it into other tools.",
                    "Print `word<TAB>count` instead of the aligned format."],
            "file": "src/main.rs",
            "edits": [('println!("{count:>6} {word}");', 'println!("{word}\\t{count}");')],
            "wrong_old": 'println!("{:>6} {}", count, word);',
            "summary": "Each output line is now `word<TAB>count`",
        },
        {
            "ask": ["Treat underscores as part of words, so snake_case identifiers count as one word.",
                    "words() should keep `snake_case` together."],
            "file": "src/lib.rs",
            "edits": [("!(c.is_alphanumeric() || c == '\\'')", "!(c.is_alphanumeric() || c == '\\'' || c == '_')"),
                      ("/// Lowercased words: runs of letters, digits and apostrophes.",
                       "/// Lowercased words: runs of letters, digits, apostrophes and underscores.")],
            "summary": "`words` keeps underscores inside words, and the doc comment says so",
        },
        {
            "ask": ["Stop lowercasing words; we want to count 'Apple' and 'apple' separately.",
                    "Make the counting case-sensitive."],
            "file": "src/lib.rs",
            "edits": [(".map(|w| w.to_lowercase())", ".map(|w| w.to_string())"),
                      ("/// Lowercased words:", "/// Words:")],
            "test_fix": ("tests/count.rs", 'assert_eq!(words("Hello, world! HELLO"), ["hello", "world", "hello"]);',
                         'assert_eq!(words("Hello, world! HELLO"), ["Hello", "world", "HELLO"]);'),
            "summary": "`words` keeps the original case, so `Apple` and `apple` are counted separately",
        },
    ],
    "bugs": [
        {
            "file": "src/lib.rs",
            "good": ".then(a.0.cmp(&b.0))",
            "bad": ".then(b.0.cmp(&a.0))",
            "locate": "sort_by",
            "report": ["Ties come out in reverse alphabetical order now.",
                       "top_n_breaks_ties_alphabetically is failing."],
            "cause": "the tie-breaker compared `b.0` with `a.0`, which sorts equal counts in reverse alphabetical "
                     "order",
            "review": "`.then(b.0.cmp(&a.0))` reverses the tie-break: words with equal counts now come out Z to "
                      "A, contradicting the doc comment ('ties in alphabetical order').",
            "commit": "Tweak tie-break",
        },
        {
            "file": "src/lib.rs",
            "good": "!(c.is_alphanumeric() || c == '\\'')",
            "bad": "!c.is_alphanumeric()",
            "locate": "pub fn words",
            "report": ["\"don't\" is being counted as \"don\" and \"t\".",
                       "keeps_apostrophes fails after the splitter change."],
            "cause": "the split predicate no longer treated `'` as part of a word, so contractions were cut in "
                     "two",
            "review": "Splitting on everything that isn't alphanumeric cuts contractions in half (`don't` "
                      "becomes `don` and `t`). The apostrophe was deliberately part of the word characters.",
            "commit": "Simplify word splitting",
        },
        {
            "file": "src/lib.rs",
            "good": ".map(|w| w.to_lowercase())",
            "bad": ".map(|w| w.to_string())",
            "locate": "pub fn words",
            "report": ["'Hello' and 'hello' are counted as different words.",
                       "The lowercase test broke."],
            "cause": "`words` mapped with `to_string()` instead of `to_lowercase()`, so case variants were "
                     "counted separately",
            "review": "`to_string()` keeps the original case, so `Hello` and `hello` count separately; the doc "
                      "comment promises lowercased words.",
            "commit": "Avoid allocation in words",
        },
        {
            "file": "src/lib.rs",
            "good": "c.is_alphanumeric()",
            "bad": "c.is_alphabetic()",
            "report": ["Numbers vanish from the counts: 'route 66' only counts 'route'.",
                       "Digits are dropped by words(); '2024' never shows up in the output."],
            "locate": "pub fn words",
            "regression": ("tests/count.rs",
                           "#[test]\nfn keeps_numbers() {\n    assert_eq!(words(\"route 66\"), [\"route\", \"66\"]);\n}\n"),
            "cause": "the split predicate used `is_alphabetic()`, so digits counted as separators",
            "review": "`is_alphabetic()` treats digits as separators, so numbers disappear from the counts. The "
                      "doc comment says letters and digits; no test has a number in it, so nothing fails.",
            "commit": "Only count alphabetic words",
        },
    ],
    "features": [
        {
            "ask": ["Add `count_without(text, stop: &[&str])` that skips stop words (compared after lowercasing).",
                    "We need stop-word filtering: count_without(text, &[\"the\", \"a\"])."],
            "locate": "pub fn top_n",
            "test_file": "tests/count.rs",
            "test_import": ("use wordfreq::{count, top_n, words};", "use wordfreq::{count, count_without, top_n, words};"),
            "test": "#[test]\nfn skips_stop_words() {\n    let counts = count_without(\"The cat and the hat\", &[\"the\", \"and\"]);\n"
                    "    assert_eq!(counts.len(), 2);\n}\n",
            "impl": [("src/lib.rs", "/// The n most frequent words",
                      "/// Like `count`, but ignoring the given (lowercase) stop words.\n"
                      "pub fn count_without(text: &str, stop: &[&str]) -> HashMap<String, usize> {\n"
                      "    let mut counts = count(text);\n    counts.retain(|w, _| !stop.contains(&w.as_str()));\n"
                      "    counts\n}\n\n/// The n most frequent words")],
            "summary": "Added `count_without(text, stop)`, which counts as usual and then drops the stop words",
        },
        {
            "ask": ["Add `longest_word(text) -> Option<String>`: the longest word, the first one on ties.",
                    "I'd like a longest_word function in the library (None for empty text)."],
            "locate": "How often each word",
            "test_file": "tests/count.rs",
            "test_import": ("use wordfreq::{count, top_n, words};", "use wordfreq::{count, longest_word, top_n, words};"),
            "test": "#[test]\nfn longest_word_prefers_the_first() {\n"
                    "    assert_eq!(longest_word(\"ab cd e\"), Some(\"ab\".to_string()));\n"
                    "    assert_eq!(longest_word(\"\"), None);\n}\n",
            "impl": [("src/lib.rs", "/// How often each word occurs.",
                      "/// The longest word; the first one wins ties.\npub fn longest_word(text: &str) -> Option<String> {\n"
                      "    words(text).into_iter().fold(None, |best, w| match best {\n"
                      "        Some(b) if String::len(&b) >= w.len() => Some(b),\n        _ => Some(w),\n    })\n}\n\n"
                      "/// How often each word occurs.")],
            "summary": "Added `longest_word(text)`, which folds over `words(text)` and keeps the first of the "
                       "longest",
        },
        {
            "ask": ["Keep hyphenated words like 'well-known' together, but drop hyphens at the start or end."],
            "locate": "pub fn words",
            "test_file": "tests/count.rs",
            "test": "#[test]\nfn keeps_inner_hyphens() {\n"
                    "    assert_eq!(words(\"a well-known -fact-\"), [\"a\", \"well-known\", \"fact\"]);\n}\n",
            "impl": [("src/lib.rs", "    text.split(|c: char| !(c.is_alphanumeric() || c == '\\''))\n"
                                    "        .filter(|w| !w.is_empty())\n",
                      "    text.split(|c: char| !(c.is_alphanumeric() || c == '\\'' || c == '-'))\n"
                      "        .map(|w| w.trim_matches('-'))\n        .filter(|w| !w.is_empty())\n")],
            "summary": "`words` keeps inner hyphens (`well-known`) and trims leading/trailing ones",
            "clarify": {
                "vague": ["Hyphenated words get split apart, that's wrong.",
                          "wordfreq handles hyphens badly."],
                "question": "How should hyphens behave? Options: (a) `well-known` stays one word, (b) it counts as "
                            "`well` and `known` (today's behaviour). And for stray hyphens like `-fact-` or "
                            "`--`: strip them, I assume?",
                "answer": "(a), one word. And yes, strip hyphens at the edges.",
            },
        },
    ],
    "refactors": [
        {
            "ask": ["Use `or_default()` in count instead of `or_insert(0)`.",
                    "Tiny cleanup in count(): entry().or_default()."],
            "read": ["src/lib.rs"],
            "edits": [("src/lib.rs", "*counts.entry(word).or_insert(0) += 1;", "*counts.entry(word).or_default() += 1;")],
            "summary": "`count` uses `entry(word).or_default()`; for `usize` the default is 0, so nothing changes",
        },
        {
            "ask": ["Rewrite the sort in top_n with sort_by_key and std::cmp::Reverse, it's easier to read.",
                    "Can top_n use a sort key (Reverse(count), word) instead of the comparator chain?"],
            "read": ["src/lib.rs"],
            "edits": [("src/lib.rs", "use std::collections::HashMap;", "use std::cmp::Reverse;\nuse std::collections::HashMap;"),
                      ("src/lib.rs", TOP_SORT, "    pairs.sort_by_key(|(word, count)| (Reverse(*count), word.clone()));\n")],
            "summary": "`top_n` sorts with `sort_by_key(|(word, count)| (Reverse(*count), word.clone()))`; the "
                       "order is unchanged (count descending, then word ascending)",
        },
        {
            "ask": ["Move the argument parsing in main.rs into a `fn limit_from_args() -> usize`.",
                    "Extract the N-parsing from main() into its own function."],
            "read": ["src/main.rs"],
            "edits": [("src/main.rs", "fn main() {\n    let n = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);\n",
                       "/// The first argument as a count, or 10 when it is missing or not a number.\n"
                       "fn limit_from_args() -> usize {\n"
                       "    std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10)\n}\n\n"
                       "fn main() {\n    let n = limit_from_args();\n")],
            "summary": "`main` now calls `limit_from_args()`, which holds the argument parsing and documents the "
                       "default",
        },
    ],
    "reviews": [
        {
            "ask": ["Review src/main.rs, please. It's our first Rust binary.",
                    "Any feedback on the wordfreq main function?"],
            "files": ["src/main.rs"],
            "comments": "1. **Silent fallback (line 4).** `wordfreq abc` prints 10 words with no warning. Print "
                        "a usage message and exit with status 2 on an unparsable argument.\n2. **Panic on "
                        "non-UTF-8 (line 6).** `expect` turns bad input into a panic with a backtrace hint; "
                        "`read_to_end` plus `String::from_utf8_lossy` would degrade gracefully.\n3. **Whole input "
                        "in memory.** Fine for documents, not for logs of several GB; counting line by line with "
                        "`BufRead::lines` keeps memory flat.\n4. **Broken pipe.** `println!` panics when piped into "
                        "`head`; locking stdout and handling the write error avoids that.\n5. The TODO (file "
                        "arguments) conflicts with N being the first argument; decide on flags (`-n 20`) "
                        "before adding it.",
        },
    ],
    "plans": [
        {
            "ask": ["Implement the TODO in main.rs: read files given as arguments. Plan it before coding.",
                    "Plan how wordfreq should accept file paths as well as stdin."],
            "explore": [[("read", {"file_path": "src/main.rs"}), ("grep", {"pattern": "TODO"})]],
            "plan": "1. Fix the argument syntax first: today the first positional argument is N. Switch N to a "
                    "`-n 20` flag so positionals can be files.\n2. Parse args by hand (no dependency): collect "
                    "`-n` and paths; no paths means stdin, like `cat`.\n3. Count across all inputs into one map "
                    "(`count` per file, then merge), so the totals are combined.\n4. A missing or unreadable "
                    "file prints `wordfreq: <path>: <error>` to stderr and exits with status 1 after the "
                    "others.\n5. Integration tests using `CARGO_BIN_EXE_wordfreq` with temp files.",
            "question": "Changing N to `-n` breaks `wordfreq 20` for existing users. Is that acceptable, or "
                        "should a bare number still be read as N?",
        },
    ],
    "tradeoffs": [
        {
            "ask": ["Should count() return a BTreeMap instead of a HashMap?",
                    "HashMap or BTreeMap for the word counts, what do you think?"],
            "read": ["src/lib.rs"],
            "answer": "Keep the `HashMap`. Counting is insert-heavy, and hashing is faster than the ordered tree, "
                      "especially for large inputs. The only consumer that cares about order is `top_n`, and it "
                      "sorts by count anyway, so a `BTreeMap`'s alphabetical order would be thrown away.\n\n"
                      "A `BTreeMap` would be worth it if callers iterated `count()` directly and needed "
                      "deterministic output (e.g. snapshot tests). If that comes up, sort at that call site "
                      "rather than paying for ordering on every insert.",
        },
    ],
    "extra_features": [
        {
            "ask": ["Add `unique_words(text) -> usize`, the number of distinct words.",
                    "I need the count of distinct words: unique_words()."],
            "locate": "pub fn top_n",
            "test_file": "tests/count.rs",
            "test_import": ("use wordfreq::{count, top_n, words};", "use wordfreq::{count, top_n, unique_words, words};"),
            "test": "#[test]\nfn counts_distinct_words() {\n    assert_eq!(unique_words(\"a B b a c\"), 3);\n}\n",
            "impl": [("src/lib.rs", "/// The n most frequent words",
                      "/// How many distinct (lowercased) words the text has.\npub fn unique_words(text: &str) -> usize {\n"
                      "    count(text).len()\n}\n\n/// The n most frequent words")],
            "summary": "Added `unique_words(text)`, the size of the `count` map, so case variants count once",
        },
    ],
}
