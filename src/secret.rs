//! A string that never shows itself: `Debug`, `Display` and `Serialize` all
//! print `[REDACTED]`. The only way to the value is [`Secret::expose`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[REDACTED]")
    }
}

/// Reads a string, and refuses every other scalar without echoing it: the
/// default error ("invalid type: found unsigned int `1234...`") would print
/// a token that YAML read as a number or a boolean, in the start error,
/// `check-config` and `reload rejected`. Taking the scalar as a string would
/// not be honest either: `1e10` would become `10000000000`, not the token
/// that was written.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

/// Said instead of the value. The caller adds the key and the file.
const NOT_A_STRING: &str =
    "expected a string; YAML read this secret as a number or a boolean, so quote it (the value is not shown)";

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_char<E: serde::de::Error>(self, v: char) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(E::custom("expected a string (the value is not shown)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let s = Secret::new("tok-123");
        assert_eq!(
            format!("{s:?} {s} {}", serde_json::to_string(&s).unwrap()),
            "[REDACTED] [REDACTED] \"[REDACTED]\""
        );
        assert_eq!(s.expose(), "tok-123");
    }

    #[test]
    fn a_secret_that_is_not_a_string_is_refused_without_its_value() {
        for json in ["12345678901234567890", "1e10", "true", "-42"] {
            let e = serde_json::from_str::<Secret>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains("quote it"), "{json} -> {e}");
            let digits: String = json.chars().filter(char::is_ascii_digit).collect();
            assert!(
                !e.contains(json) && (digits.len() < 2 || !e.contains(&digits)),
                "{json} -> {e}"
            );
        }
        assert_eq!(
            serde_json::from_str::<Secret>("\"12345\"")
                .unwrap()
                .expose(),
            "12345"
        );
    }
}
