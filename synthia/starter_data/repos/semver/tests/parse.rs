use semver_lite::{ParseError, Version};

#[test]
fn parses_plain_version() {
    let v = Version::parse("1.4.2").unwrap();
    assert_eq!((v.major, v.minor, v.patch), (1, 4, 2));
}

#[test]
fn accepts_leading_v() {
    assert_eq!(Version::parse("v2.0.1").unwrap().major, 2);
}

#[test]
fn rejects_two_parts() {
    assert_eq!(Version::parse("1.4"), Err(ParseError::WrongPartCount(2)));
}

#[test]
fn orders_by_minor_before_patch() {
    let a = Version::parse("1.2.9").unwrap();
    let b = Version::parse("1.10.0").unwrap();
    assert!(a < b);
}

#[test]
fn bump_minor_resets_patch() {
    let v = Version::parse("0.3.7").unwrap().bump_minor();
    assert_eq!(v, Version { major: 0, minor: 4, patch: 0 });
}
