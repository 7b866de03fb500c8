//! Kafka authentication that takes code, not only properties: AWS MSK IAM. Every client
//! Lakesink makes (the consumer, the dead-letter producer, the tools' offset readers) carries a
//! [`KafkaAuth`], which librdkafka asks for a SASL/OAUTHBEARER token when it needs one (at
//! start, and again before the last one expires).

use std::error::Error;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AwsCredentialProvider};
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::ClientConfig;

use super::msk_iam;
use crate::config::KafkaPlan;

/// What a client signs in with beyond its properties. The default signs nothing in.
#[derive(Clone, Default)]
pub struct KafkaAuth {
    msk: Option<Arc<MskIam>>,
}

struct MskIam {
    region: String,
    /// object_store's AWS chain (environment, web identity, ECS/EKS container endpoints,
    /// instance metadata), which caches and refreshes temporary credentials itself.
    credentials: AwsCredentialProvider,
}

impl KafkaAuth {
    pub fn new(kafka: &KafkaPlan) -> KafkaResult<KafkaAuth> {
        let Some(m) = &kafka.msk_iam else {
            return Ok(KafkaAuth::default());
        };
        // The S3 builder is only the way to object_store's credential chain; no bucket is used.
        let s3 = AmazonS3Builder::from_env()
            .with_region(&m.region)
            .with_bucket_name("lakesink-msk-iam")
            .build()
            .map_err(|e| KafkaError::ClientCreation(format!("AWS credentials for MSK IAM: {e}")))?;
        Ok(KafkaAuth {
            msk: Some(Arc::new(MskIam {
                region: m.region.clone(),
                credentials: s3.credentials().clone(),
            })),
        })
    }

    /// A fresh token, for librdkafka.
    pub fn token(&self) -> Result<OAuthToken, Box<dyn Error>> {
        let Some(m) = &self.msk else {
            return Err("sasl.mechanism = OAUTHBEARER needs [kafka.aws_msk_iam] (or librdkafka's sasl.oauthbearer.method = oidc)".into());
        };
        // librdkafka asks from whichever thread polls (the daemon's poll loop), which may be a
        // runtime's: the credentials are fetched on a thread of their own, for at most
        // CREDENTIALS_TIMEOUT (librdkafka reports a failure and asks again).
        let provider = m.credentials.clone();
        let creds = std::thread::spawn(move || {
            // The timer is made inside the runtime (an async block), not before it.
            runtime().block_on(async move {
                tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.get_credential()).await
            })
        })
        .join()
        .map_err(|_| "fetching AWS credentials panicked")?
        .map_err(|_| {
            format!(
                "AWS credentials for MSK IAM: none within {}s (environment, web identity, container endpoint, instance metadata)",
                CREDENTIALS_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("AWS credentials for MSK IAM: {e}"))?;
        let t = msk_iam::token(
            &msk_iam::Credentials {
                key_id: &creds.key_id,
                secret_key: &creds.secret_key,
                token: creds.token.as_deref(),
            },
            &m.region,
            chrono::Utc::now(),
        );
        tracing::debug!(region = %m.region, expires_ms = t.expires_ms, "MSK IAM token signed");
        Ok(OAuthToken {
            token: t.value,
            principal_name: String::new(),
            lifetime_ms: t.expires_ms,
        })
    }
}

/// How long one token's credentials may take to fetch (the chain caches them, so this is paid
/// when they are first fetched or expire).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(5);

/// One small runtime for the credential chain's HTTP calls (it keeps their connections).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lakesink-aws-credentials")
            .enable_all()
            .build()
            .expect("a tokio runtime for AWS credentials")
    })
}

impl ClientContext for KafkaAuth {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    /// The clients with this context (the tools' and the watermark's offset readers, the
    /// dead-letter producer) report their failures through their results; librdkafka's
    /// global errors beside them (brokers down while a kept reader closes) are at debug.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
    }

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        self.token()
    }
}

impl ConsumerContext for KafkaAuth {}

/// A consumer for reading offsets, watermarks and records from outside the group's poll loop.
/// librdkafka asks for the first token from `poll`, which such a consumer might never call
/// before its first request (which would then wait for a token that never comes): it is
/// polled once here.
pub fn consumer(kafka: &KafkaPlan, cfg: &ClientConfig) -> KafkaResult<BaseConsumer<KafkaAuth>> {
    let auth = KafkaAuth::new(kafka)?;
    let signs = auth.msk.is_some();
    let c: BaseConsumer<KafkaAuth> = cfg.create_with_context(auth)?;
    if signs {
        let _ = c.poll(Duration::from_millis(100));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MskIamPlan;
    use object_store::aws::AwsCredential;
    use object_store::StaticCredentialProvider;

    #[test]
    fn clients_for_msk_iam_sign_a_token_with_the_chains_credentials() {
        let mut plan = KafkaPlan::plain("127.0.0.1:1", "g");
        plan.msk_iam = Some(MskIamPlan {
            region: "eu-west-1".into(),
        });
        // The chain builds without credentials at hand (they are fetched when asked for).
        assert!(KafkaAuth::new(&plan).unwrap().msk.is_some());
        let auth = KafkaAuth {
            msk: Some(Arc::new(MskIam {
                region: "eu-west-1".into(),
                credentials: Arc::new(StaticCredentialProvider::new(AwsCredential {
                    key_id: "AKIDEXAMPLE".into(),
                    secret_key: "secret".into(),
                    token: Some("session".into()),
                })),
            })),
        };
        let t = auth.token().unwrap();
        let now_ms = chrono::Utc::now().timestamp_millis();
        assert!(
            t.lifetime_ms > now_ms + 890_000 && t.lifetime_ms <= now_ms + 900_000,
            "{}",
            t.lifetime_ms
        );
        assert!(t
            .token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

        // A client made for MSK IAM speaks OAUTHBEARER over TLS.
        let cfg = super::super::client_config(&plan);
        assert_eq!(cfg.get("sasl.mechanism"), Some("OAUTHBEARER"));
        assert_eq!(cfg.get("security.protocol"), Some("SASL_SSL"));
        assert!(consumer(&plan, &cfg).is_ok());
        let cfg = super::super::producer_config(&plan);
        assert_eq!(cfg.get("sasl.mechanism"), Some("OAUTHBEARER"));
        assert_eq!(cfg.get("security.protocol"), Some("SASL_SSL"));

        // Without [kafka.aws_msk_iam] a token is refused with the reason.
        let err = match KafkaAuth::default().token() {
            Ok(_) => panic!("a token without [kafka.aws_msk_iam]"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("aws_msk_iam"), "{err}");
    }

    /// OAUTHBEARER/OIDC is librdkafka's own (rdkafka's `curl` feature): a client made from
    /// properties with `sasl.oauthbearer.method = "oidc"` fetches its token from the identity
    /// provider at start, by client credentials, with no code of Lakesink's in between.
    #[test]
    fn oidc_clients_fetch_their_token_from_the_identity_provider() {
        use std::io::{Read, Write};
        let idp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = idp.local_addr().unwrap().port();
        idp.set_nonblocking(true).unwrap();
        let server = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let (mut s, _) = loop {
                match idp.accept() {
                    Ok(c) => break c,
                    Err(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("no token request within 20 s: {e}"),
                }
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            // An unsigned JWT: librdkafka reads its `sub` and `exp`, the broker checks it.
            let b64 = |j: &str| super::msk_iam::base64url(j.as_bytes());
            let exp = chrono::Utc::now().timestamp() + 3600;
            let jwt = format!(
                "{}.{}.c2ln",
                b64(r#"{"alg":"none"}"#),
                b64(&format!(
                    r#"{{"sub":"lakesink","exp":{exp},"iat":{}}}"#,
                    exp - 3600
                ))
            );
            let body =
                format!(r#"{{"access_token":"{jwt}","token_type":"bearer","expires_in":3600}}"#);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            String::from_utf8_lossy(&request).to_string()
        });
        let mut plan = KafkaPlan::plain("127.0.0.1:1", "g");
        for (k, v) in [
            ("security.protocol", "SASL_PLAINTEXT".to_string()),
            ("sasl.mechanism", "OAUTHBEARER".into()),
            ("sasl.oauthbearer.method", "oidc".into()),
            ("sasl.oauthbearer.client.id", "lakesink".into()),
            ("sasl.oauthbearer.client.secret", "s3cret".into()),
            ("sasl.oauthbearer.scope", "kafka".into()),
            (
                "sasl.oauthbearer.token.endpoint.url",
                format!("http://127.0.0.1:{port}/token"),
            ),
        ] {
            plan.properties.insert(k.into(), v);
        }
        let _client = consumer(&plan, &super::super::client_config(&plan)).unwrap();
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /token "), "{request}");
        assert!(
            request.contains("grant_type=client_credentials") && request.contains("scope=kafka"),
            "{request}"
        );
        let basic = super::msk_iam::base64url(b"lakesink:s3cret");
        assert!(
            request.contains(&format!("Authorization: Basic {basic}")),
            "{request}"
        );
    }
}
