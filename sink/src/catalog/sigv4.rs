//! AWS SigV4 for the catalog's JSON APIs, reusing object_store's signer and credential chain.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AwsAuthorizer, AwsCredential, AwsCredentialProvider};
use object_store::client::HttpRequestBody;
use object_store::StaticCredentialProvider;

/// Credentials from the config, or else the standard chain object_store implements
/// (environment, web identity, ECS container credentials, EC2 instance metadata).
pub(super) fn credentials(
    region: &str,
    fixed: Option<&(String, String, Option<String>)>,
) -> Result<AwsCredentialProvider, String> {
    if let Some((key_id, secret_key, token)) = fixed {
        return Ok(Arc::new(StaticCredentialProvider::new(AwsCredential {
            key_id: key_id.clone(),
            secret_key: secret_key.clone(),
            token: token.clone(),
        })));
    }
    // The bucket name is required by the builder and never used.
    let s3 = AmazonS3Builder::from_env()
        .with_region(region)
        .with_bucket_name("lakesink-catalog-credentials")
        .build()
        .map_err(|e| format!("AWS credentials: {e}"))?;
    Ok(s3.credentials().clone())
}

/// Signs a POST of `body` to `url` with `headers`; returns the headers to send (including
/// `authorization`, `x-amz-date`, `x-amz-content-sha256` and a session token if any).
pub(super) fn sign_post(
    credential: &AwsCredential,
    service: &str,
    region: &str,
    url: &url::Url,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> Result<http::HeaderMap, String> {
    let mut builder = http::Request::builder().method("POST").uri(url.as_str());
    for (k, v) in headers {
        builder = builder.header(*k, v);
    }
    let mut request: http::Request<HttpRequestBody> = builder
        .body(HttpRequestBody::from(body.to_vec()))
        .map_err(|e| format!("building request: {e}"))?;
    AwsAuthorizer::new(credential, service, region)
        .try_authorize(&mut request, None)
        .map_err(|e| format!("signing request: {e}"))?;
    Ok(request.headers().clone())
}
