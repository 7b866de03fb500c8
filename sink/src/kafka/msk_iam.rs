//! The token of AWS MSK IAM authentication: SASL/OAUTHBEARER whose token is a SigV4-presigned
//! URL of the action `kafka-cluster:Connect`, base64url-encoded without padding. This is what
//! AWS's own signers (aws-msk-iam-sasl-signer for Python, Go, JS, Java) send; the broker checks
//! the signature, the credentials' IAM policy, and that the URL has not expired (15 minutes).
//!
//! A pure function of the credentials, the region and the clock, so the test can hold it
//! against AWS's Python signer at a fixed time (`tests/tests/e2e_deploy.rs`).

use aws_lc_rs::{digest, hmac};

use crate::units::hex;
use chrono::{DateTime, Utc};

/// How long a token is valid, as AWS's signers sign it.
pub const EXPIRES_SECS: i64 = 900;

/// Credentials to sign with (the same AWS chain as the store's: environment, web identity,
/// container endpoints, instance metadata).
pub struct Credentials<'a> {
    pub key_id: &'a str,
    pub secret_key: &'a str,
    /// The session token of temporary credentials.
    pub token: Option<&'a str>,
}

/// A token and when it expires, in milliseconds since the epoch (what librdkafka takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub expires_ms: i64,
}

/// The token for `region`, signed at `now`.
pub fn token(creds: &Credentials<'_>, region: &str, now: DateTime<Utc>) -> Token {
    let host = format!("kafka.{region}.amazonaws.com");
    let date = now.format("%Y%m%d").to_string();
    let timestamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let scope = format!("{date}/{region}/kafka-cluster/aws4_request");

    let mut params = vec![
        ("Action", "kafka-cluster:Connect".to_string()),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_string()),
        ("X-Amz-Credential", format!("{}/{scope}", creds.key_id)),
        ("X-Amz-Date", timestamp.clone()),
        ("X-Amz-Expires", EXPIRES_SECS.to_string()),
        ("X-Amz-SignedHeaders", "host".to_string()),
    ];
    if let Some(t) = creds.token {
        params.push(("X-Amz-Security-Token", t.to_string()));
    }
    params.sort_by(|a, b| a.0.cmp(b.0));
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");

    // The body of a GET is empty; its hash is signed (botocore's SigV4QueryAuth does so).
    let canonical = format!(
        "GET\n/\n{query}\nhost:{host}\n\nhost\n{}",
        hex(digest::digest(&digest::SHA256, b"").as_ref())
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{}", creds.secret_key).into_bytes();
    for part in [date.as_str(), region, "kafka-cluster", "aws4_request"] {
        key = sign(&key, part.as_bytes());
    }
    let signature = hex(&sign(&key, to_sign.as_bytes()));

    let url = format!(
        "https://{host}/?{query}&X-Amz-Signature={signature}&User-Agent={}",
        encode(concat!("lakesink/", env!("CARGO_PKG_VERSION")))
    );
    Token {
        value: base64url(url.as_bytes()),
        expires_ms: (now.timestamp() + EXPIRES_SECS) * 1000,
    }
}

fn sign(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// SigV4's URI encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Base64 with the URL-safe alphabet and no padding (RFC 4648 §5), as AWS's signers send it.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strict decoder: it refuses padding and the standard alphabet.
    fn decode(token: &str) -> String {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn base64url_has_no_padding_and_the_url_safe_alphabet() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        for s in ["", "a", "ab", "abc", "https://kafka.x/?a=b&c=%2F"] {
            assert_eq!(decode(&base64url(s.as_bytes())), s);
        }
    }

    #[test]
    fn the_token_is_a_presigned_connect_url_that_expires_in_15_minutes() {
        let now = DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let creds = Credentials {
            key_id: "AKIDEXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token: Some("session/token+="),
        };
        let t = token(&creds, "us-east-1", now);
        assert_eq!(t.expires_ms, (now.timestamp() + 900) * 1000);
        let url = decode(&t.value);
        assert!(
            url.starts_with("https://kafka.us-east-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20240102%2Fus-east-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20240102T030405Z&X-Amz-Expires=900&X-Amz-Security-Token=session%2Ftoken%2B%3D&X-Amz-SignedHeaders=host&X-Amz-Signature="),
            "{url}"
        );
        assert!(url.contains("&User-Agent=lakesink%2F"), "{url}");
        // Another clock, another signature.
        let later = token(&creds, "us-east-1", now + chrono::Duration::seconds(1));
        assert_ne!(later.value, t.value);
    }
}
