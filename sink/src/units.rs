//! Human units in the config: sizes (`"64MiB"`, `"1.5GB"`, `"4096"`) and durations (`"5m"`,
//! `"30s"`, `"1h 30m"`).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("`{0}` is not a size (examples: \"512KiB\", \"64MiB\", \"1GB\", \"4096\")")]
    Size(String),
    #[error("`{0}` is not a duration (examples: \"500ms\", \"30s\", \"5m\", \"1h\")")]
    Duration(String),
}

/// Parses a byte size: a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB;
/// case-insensitive, space allowed).
pub(crate) fn parse_bytes(s: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Size(s.to_string());
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.replace('_', "").parse().map_err(|_| err())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(err()),
    };
    let v = num * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(err());
    }
    Ok(v.round() as u64)
}

/// Parses a duration in humantime syntax (`"5m"`, `"30s"`, `"1h 30m"`, `"250ms"`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(s.trim()).map_err(|_| UnitError::Duration(s.to_string()))
}

/// A byte size as the config writes it: a string with a unit (`"64MiB"`) or a bare integer.
/// Parsed when the file is read, so a bad size is an error naming its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_bytes(self.0))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_bytes(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(UnitError::Size(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration as the config writes it (`"5m"`, `"250ms"`, `"1h 30m"`), parsed when the file is
/// read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    pub const fn secs(n: u64) -> Self {
        Span(Duration::from_secs(n))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Span).map_err(de::Error::custom)
    }
}

/// Formats a byte count for people (`"12.3 MiB"`).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Lower-case hex of some bytes (digests, signatures).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("64 mib"), Ok(64 << 20));
        assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("128KiB"), Ok(128 << 10));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("-1MiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn typed_values_parse_where_the_file_is_read() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            size: ByteSize,
            n: ByteSize,
            d: Span,
        }
        let t: T = toml::from_str("size = \"64MiB\"\nn = 4096\nd = \"90s\"").unwrap();
        assert_eq!(
            (t.size, t.n, t.d),
            (ByteSize::mib(64), ByteSize(4096), Span::secs(90))
        );
        let e = toml::from_str::<T>("size = \"64 lots\"\nn = 1\nd = \"1s\"").unwrap_err();
        assert!(e.message().contains("is not a size"), "{e}");
        assert!(toml::from_str::<T>("size = 1\nn = -1\nd = \"1s\"").is_err());
        assert!(toml::from_str::<T>("size = 1\nn = 1\nd = \"soon\"").is_err());
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
