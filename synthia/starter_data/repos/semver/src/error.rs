use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    WrongPartCount(usize),
    NotANumber(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ParseError::WrongPartCount(n) => write!(f, "expected 3 dot-separated parts, got {}", n),
            ParseError::NotANumber(s) => write!(f, "not a number: {:?}", s),
        }
    }
}

impl std::error::Error for ParseError {}
