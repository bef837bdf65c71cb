use wordfreq::{count, top_n, words};

#[test]
fn splits_on_punctuation_and_lowercases() {
    assert_eq!(words("Hello, world! HELLO"), ["hello", "world", "hello"]);
}

#[test]
fn keeps_apostrophes() {
    assert_eq!(words("don't stop"), ["don't", "stop"]);
}

#[test]
fn top_n_breaks_ties_alphabetically() {
    let counts = count("b a c b a");
    assert_eq!(top_n(&counts, 2), [("a".to_string(), 2), ("b".to_string(), 2)]);
}
