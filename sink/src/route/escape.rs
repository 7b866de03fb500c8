//! Hive's escaping of partition values, so that no value taken from a record can leave its table.
//!
//! Hive (`FileUtils.escapePathName`) percent-encodes control characters and
//! `"` `#` `%` `'` `*` `/` `:` `=` `?` `\` DEL `{` `[` `]` `^` in partition values, and writes an
//! empty or null value as `__HIVE_DEFAULT_PARTITION__`. Athena, Trino and Spark undo exactly this
//! encoding when they read partition values from a path. We also encode a value that is wholly
//! `.` or `..`, which Hive leaves alone but which would be a relative path segment when a template
//! puts a value at the start of a segment.

/// What Hive writes for a null or empty partition value.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

fn needs_escape(b: u8) -> bool {
    matches!(
        b,
        0x00..=0x1F
            | b'"'
            | b'#'
            | b'%'
            | b'\''
            | b'*'
            | b'/'
            | b':'
            | b'='
            | b'?'
            | b'\\'
            | 0x7F
            | b'{'
            | b'['
            | b']'
            | b'^'
    )
}

/// Appends `value` to `out`, escaped the way Hive escapes partition values.
pub fn escape_partition_value(value: &str, out: &mut String) {
    if value.is_empty() {
        out.push_str(HIVE_DEFAULT_PARTITION);
        return;
    }
    if value == "." || value == ".." {
        for _ in 0..value.len() {
            out.push_str("%2E");
        }
        return;
    }
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if needs_escape(b) {
            out.push_str(&value[start..i]);
            push_hex(b, out);
            start = i + 1;
        }
    }
    out.push_str(&value[start..]);
}

fn push_hex(b: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 0xF) as usize] as char);
}

/// Reverses [`escape_partition_value`] (what a query engine does when it reads the path).
pub fn unescape_partition_value(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn esc(v: &str) -> String {
        let mut s = String::new();
        escape_partition_value(v, &mut s);
        s
    }

    #[test]
    fn hive_examples() {
        assert_eq!(esc("us-east-1"), "us-east-1");
        assert_eq!(esc("a/b"), "a%2Fb");
        assert_eq!(esc("k=v"), "k%3Dv");
        assert_eq!(esc("50%"), "50%25");
        assert_eq!(esc("../../etc"), "..%2F..%2Fetc");
        assert_eq!(esc(".."), "%2E%2E");
        assert_eq!(esc("."), "%2E");
        assert_eq!(esc(""), HIVE_DEFAULT_PARTITION);
        assert_eq!(esc("a\nb\u{7f}"), "a%0Ab%7F");
        assert_eq!(esc("naïve ✓"), "naïve ✓");
    }

    proptest! {
        /// No escaped value can contain a path separator or be a relative segment, whatever
        /// the record held, and escaping is reversible.
        #[test]
        fn escaped_values_stay_in_one_segment(v in any::<String>()) {
            let e = esc(&v);
            prop_assert!(!e.contains('/'));
            prop_assert!(!e.contains('='));
            prop_assert!(e != "." && e != "..");
            prop_assert!(!e.is_empty());
            prop_assert!(!e.chars().any(|c| c.is_ascii_control()));
            let key = format!("t/x={e}/f");
            prop_assert!(object_store::path::Path::parse(&key).is_ok(), "{}", key);
            if !v.is_empty() {
                prop_assert_eq!(unescape_partition_value(&e), v);
            }
        }
    }
}
