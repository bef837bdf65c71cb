use std::io::Read;

fn main() {
    let n = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).expect("stdin is not UTF-8");
    // TODO: read the files named on the command line, not only stdin
    for (word, count) in wordfreq::top_n(&wordfreq::count(&text), n) {
        println!("{count:>6} {word}");
    }
}
