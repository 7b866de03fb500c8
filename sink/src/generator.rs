//! A deterministic generator of CloudTrail-shaped events (~1.4 KB each): a few hundred users,
//! ~50 event names, ~20 regions, nested request parameters, and a share of late, out-of-order
//! events. The same seed gives the same bytes. Used by the demo, the tests and the benchmark.

use std::fmt::Write;

/// SplitMix64: tiny, fast, and stable across crate versions (the output must never change).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "eu-south-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "sa-east-1",
    "me-south-1",
    "af-south-1",
];

const EVENTS: &[(&str, &str, bool)] = &[
    ("s3.amazonaws.com", "GetObject", true),
    ("s3.amazonaws.com", "PutObject", false),
    ("s3.amazonaws.com", "ListBucket", true),
    ("s3.amazonaws.com", "DeleteObject", false),
    ("s3.amazonaws.com", "HeadObject", true),
    ("s3.amazonaws.com", "GetBucketAcl", true),
    ("s3.amazonaws.com", "PutBucketPolicy", false),
    ("s3.amazonaws.com", "CreateMultipartUpload", false),
    ("ec2.amazonaws.com", "DescribeInstances", true),
    ("ec2.amazonaws.com", "RunInstances", false),
    ("ec2.amazonaws.com", "TerminateInstances", false),
    ("ec2.amazonaws.com", "DescribeSecurityGroups", true),
    ("ec2.amazonaws.com", "AuthorizeSecurityGroupIngress", false),
    ("ec2.amazonaws.com", "DescribeVolumes", true),
    ("ec2.amazonaws.com", "CreateTags", false),
    ("ec2.amazonaws.com", "DescribeSubnets", true),
    ("iam.amazonaws.com", "GetUser", true),
    ("iam.amazonaws.com", "ListRoles", true),
    ("iam.amazonaws.com", "CreateAccessKey", false),
    ("iam.amazonaws.com", "AttachRolePolicy", false),
    ("iam.amazonaws.com", "PassRole", false),
    ("iam.amazonaws.com", "ListPolicies", true),
    ("sts.amazonaws.com", "AssumeRole", false),
    ("sts.amazonaws.com", "GetCallerIdentity", true),
    ("sts.amazonaws.com", "AssumeRoleWithWebIdentity", false),
    ("signin.amazonaws.com", "ConsoleLogin", false),
    ("kms.amazonaws.com", "Decrypt", true),
    ("kms.amazonaws.com", "Encrypt", true),
    ("kms.amazonaws.com", "GenerateDataKey", true),
    ("kms.amazonaws.com", "DescribeKey", true),
    ("lambda.amazonaws.com", "Invoke", false),
    ("lambda.amazonaws.com", "ListFunctions20150331", true),
    (
        "lambda.amazonaws.com",
        "UpdateFunctionCode20150331v2",
        false,
    ),
    ("dynamodb.amazonaws.com", "DescribeTable", true),
    ("dynamodb.amazonaws.com", "CreateTable", false),
    ("dynamodb.amazonaws.com", "ListTables", true),
    ("cloudwatch.amazonaws.com", "PutMetricData", false),
    ("cloudwatch.amazonaws.com", "GetMetricData", true),
    ("logs.amazonaws.com", "CreateLogStream", false),
    ("logs.amazonaws.com", "DescribeLogGroups", true),
    ("rds.amazonaws.com", "DescribeDBInstances", true),
    ("rds.amazonaws.com", "CreateDBSnapshot", false),
    ("sqs.amazonaws.com", "SendMessage", false),
    ("sqs.amazonaws.com", "ReceiveMessage", true),
    ("sns.amazonaws.com", "Publish", false),
    ("secretsmanager.amazonaws.com", "GetSecretValue", true),
    ("ssm.amazonaws.com", "GetParameter", true),
    ("ssm.amazonaws.com", "StartSession", false),
    ("ecr.amazonaws.com", "GetAuthorizationToken", true),
    ("eks.amazonaws.com", "DescribeCluster", true),
];

const AGENTS: &[&str] = &[
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1016-aws exe/x86_64.ubuntu.22 prompt/off command/s3.cp",
    "Boto3/1.34.64 md/Botocore#1.34.64 ua/2.0 os/linux#6.1.79 md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.64",
    "aws-sdk-go-v2/1.25.3 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/s3#1.51.4",
    "console.amazonaws.com",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "aws-sdk-java/2.25.11 Linux/5.10.210-201.852.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/standard",
    "Terraform/1.7.4 (+https://www.terraform.io) terraform-provider-aws/5.40.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.25.2",
];

const ERRORS: &[(&str, &str)] = &[
    ("AccessDenied", "User: arn:aws:iam::123456789012:user/svc is not authorized to perform this action on the resource because no identity-based policy allows the action"),
    ("NoSuchKey", "The specified key does not exist."),
    ("ThrottlingException", "Rate exceeded"),
    ("ValidationException", "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null"),
];

/// Shape of a generated stream.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    /// First event time, seconds since the epoch.
    pub start_secs: i64,
    /// Event times advance evenly over this many seconds across the whole stream.
    pub span_secs: i64,
    /// Events per 1,000 that are late (10–90 minutes older than their neighbours).
    pub late_per_mille: u64,
    pub users: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 42,
            start_secs: 1_704_157_200, // 2024-01-02T01:00:00Z
            span_secs: 4 * 3600,
            late_per_mille: 50,
            users: 300,
        }
    }
}

/// Writes event number `seq` of `total` into `out` (cleared first) and returns its event time
/// in seconds. The event's `eventID` is unique per `seq`.
pub fn event(cfg: &GenConfig, seq: u64, total: u64, out: &mut String) -> i64 {
    out.clear();
    let mut r = Rng::new(cfg.seed ^ seq.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut t =
        cfg.start_secs + (seq as i128 * cfg.span_secs as i128 / total.max(1) as i128) as i64;
    if r.below(1000) < cfg.late_per_mille {
        t -= 600 + r.below(4800) as i64;
        t = t.max(cfg.start_secs - 5400);
    }
    let ts = chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ");
    let user = r.below(cfg.users);
    let account = 100_000_000_000 + (user % 7) * 111_111_111;
    let (source, name, read_only) = EVENTS[r.below(EVENTS.len() as u64) as usize];
    let region = r.pick(REGIONS);
    let agent = r.pick(AGENTS);
    let ip = format!(
        "{}.{}.{}.{}",
        10 + r.below(200),
        r.below(256),
        r.below(256),
        1 + r.below(254)
    );
    let kind = if user % 5 == 0 {
        "AssumedRole"
    } else {
        "IAMUser"
    };
    let bucket = format!("team-{}-data-{}", user % 17, region);
    let key = format!("logs/{}/part-{:05}.json.gz", user % 31, r.below(100_000));
    let request_id = format!("{:016X}", r.next_u64());
    let _ = write!(
        out,
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"{kind}","principalId":"AIDA{user:016X}","arn":"arn:aws:iam::{account}:user/user-{user}","accountId":"{account}","accessKeyId":"AKIA{k:016X}","userName":"user-{user}","sessionContext":{{"attributes":{{"creationDate":"{ts}","mfaAuthenticated":"{mfa}"}}}}}},"eventTime":"{ts}","eventSource":"{source}","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"{agent}","requestParameters":{{"bucketName":"{bucket}","key":"{key}","x-id":"{name}","maxResults":{max}}},"responseElements":{resp},"additionalEventData":{{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":{bin},"AuthenticationMethod":"AuthHeader","bytesTransferredOut":{bout}}},"requestID":"{request_id}","eventID":"{e1:08x}-{e2:04x}-4{e3:03x}-a{e4:03x}-{seq:012x}","readOnly":{read_only},"resources":[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::{bucket}/{key}"}},{{"accountId":"{account}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket}"}}],"eventType":"AwsApiCall","managementEvent":{mgmt},"recipientAccountId":"{account}","eventCategory":"{cat}","sequence":{seq}"#,
        k = r.next_u64(),
        mfa = user % 3 == 0,
        max = 10 + r.below(990),
        resp = if read_only {
            "null".to_string()
        } else {
            format!(
                r#"{{"x-amz-server-side-encryption":"AES256","x-amz-version-id":"{:016x}"}}"#,
                r.next_u64()
            )
        },
        bin = r.below(100_000),
        bout = r.below(10_000_000),
        e1 = r.next_u64() as u32,
        e2 = r.below(65536),
        e3 = r.below(4096),
        e4 = r.below(4096),
        mgmt = !source.starts_with("s3."),
        cat = if source.starts_with("s3.") {
            "Data"
        } else {
            "Management"
        },
    );
    if r.below(100) < 4 {
        let (code, msg) = ERRORS[r.below(ERRORS.len() as u64) as usize];
        let _ = write!(out, r#","errorCode":"{code}","errorMessage":"{msg}""#);
    }
    out.push('}');
    t
}

/// What `lakesink generate` sends.
#[derive(Debug, Clone)]
pub struct Live {
    pub brokers: String,
    pub topic: String,
    /// Events per second.
    pub rate: u64,
    /// Stop after this many (`None`: until `stop`).
    pub records: Option<u64>,
    /// Every this many events, one that is not JSON (to see dead letters at work).
    pub bad_every: Option<u64>,
}

/// Produces CloudTrail-shaped events of the current time (5 % late by 10–90 minutes) at
/// `live.rate` per second, keyed by user, until `stop` or `live.records`. Blocking. Returns
/// the number sent. Each start draws a new seed, so event IDs never repeat across restarts.
pub fn produce_live(
    live: &Live,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<u64, rdkafka::error::KafkaError> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::time::{Duration, Instant};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &live.brokers)
        .set("linger.ms", "20")
        .set("compression.type", "zstd")
        .create()?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(42, |d| d.as_nanos() as u64);
    let started = Instant::now();
    let mut out = String::new();
    let mut sent = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && live.records.is_none_or(|n| sent < n)
    {
        // Keep to the rate: as many as are due by now, then a short sleep.
        let due = (started.elapsed().as_secs_f64() * live.rate as f64) as u64 + 1;
        while sent < due && live.records.is_none_or(|n| sent < n) {
            let cfg = GenConfig {
                seed,
                start_secs: chrono::Utc::now().timestamp(),
                span_secs: 0,
                ..GenConfig::default()
            };
            let bad = live.bad_every.is_some_and(|n| n > 0 && sent % n == n - 1);
            if bad {
                out.clear();
                out.push_str("this is not JSON: a dead letter");
            } else {
                event(&cfg, sent, 1, &mut out);
            }
            let key = format!("user-{}", sent % 300);
            loop {
                match producer.send(BaseRecord::to(&live.topic).key(&key).payload(&out)) {
                    Ok(()) => break,
                    Err((e, _))
                        if e.rdkafka_error_code()
                            == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                    {
                        producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => return Err(e),
                }
            }
            sent += 1;
        }
        producer.poll(Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_json_of_the_advertised_size_and_deterministic() {
        let cfg = GenConfig::default();
        let mut a = String::new();
        let mut b = String::new();
        let mut total = 0usize;
        let mut late = 0;
        let n = 2000;
        let mut prev = 0;
        for i in 0..n {
            let t = event(&cfg, i, n, &mut a);
            event(&cfg, i, n, &mut b);
            assert_eq!(a, b);
            let v: serde_json::Value = serde_json::from_str(&a).unwrap();
            assert_eq!(v["sequence"], i);
            assert!(v["eventTime"].as_str().unwrap().ends_with('Z'));
            total += a.len();
            if t < prev - 300 {
                late += 1;
            }
            prev = prev.max(t);
        }
        let avg = total / n as usize;
        assert!((1100..1700).contains(&avg), "average event size {avg}");
        assert!(late > n / 50, "late events: {late}");
    }
}
