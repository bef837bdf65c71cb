//! Parse and compare semantic versions like `1.4.2`.

mod error;

pub use error::ParseError;
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    pub fn parse(text: &str) -> Result<Version, ParseError> {
        // TODO: support pre-release tags such as 1.0.0-beta.1
        let text = text.trim().trim_start_matches('v');
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 3 {
            return Err(ParseError::WrongPartCount(parts.len()));
        }
        let num = |s: &str| s.parse::<u64>().map_err(|_| ParseError::NotANumber(s.to_string()));
        Ok(Version { major: num(parts[0])?, minor: num(parts[1])?, patch: num(parts[2])? })
    }

    pub fn bump_minor(&self) -> Version {
        Version { major: self.major, minor: self.minor + 1, patch: 0 }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
