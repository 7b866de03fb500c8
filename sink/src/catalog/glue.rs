//! `kind = "glue"`: AWS Glue Data Catalog over its JSON API (`AWSGlue.*` targets, SigV4-signed),
//! so any Glue-compatible endpoint works (moto, LocalStack) through `endpoint`.
//!
//! A partition's StorageDescriptor is the table's, with the partition's own location; values
//! are the logical values (the path's, unescaped), as Hive registers them, so a query on the
//! real value finds the partition. `BatchCreatePartition` answers duplicates
//! with `AlreadyExistsException` entries, which count as success.

use futures::future::BoxFuture;
use object_store::aws::AwsCredentialProvider;
use serde_json::{json, Value};

use super::{
    http_error, sigv4, transport_error, Catalog, CatalogError, CatalogTable, NewPartition,
    SealedPartition,
};
use crate::config::{Format, GluePlan};

const KIND: &str = "glue";
/// `BatchCreatePartition` takes at most 100 partitions.
const BATCH: usize = 100;

pub struct Glue {
    http: reqwest::Client,
    endpoint: url::Url,
    region: String,
    credentials: AwsCredentialProvider,
    /// Each table's StorageDescriptor, as `GetTable` returned it.
    descriptors: super::Descriptors<Value>,
}

impl Glue {
    pub fn new(plan: &GluePlan) -> Result<Glue, CatalogError> {
        let refused = |message: String| CatalogError::Refused {
            catalog: KIND,
            what: "the configuration".into(),
            message,
        };
        let endpoint = match &plan.endpoint {
            Some(e) => e.clone(),
            None => url::Url::parse(&format!("https://glue.{}.amazonaws.com/", plan.region))
                .map_err(|e| refused(e.to_string()))?,
        };
        Ok(Glue {
            http: reqwest::Client::builder()
                .timeout(plan.timeout)
                .build()
                .map_err(|e| refused(e.to_string()))?,
            endpoint,
            region: plan.region.clone(),
            credentials: sigv4::credentials(&plan.region, plan.credentials.as_ref())
                .map_err(refused)?,
            descriptors: super::Descriptors::new(),
        })
    }

    /// One Glue API call. Errors come back as `{"__type": "…Exception", "message": "…"}`.
    async fn call(
        &self,
        target: &str,
        body: Value,
    ) -> Result<Result<Value, GlueFault>, CatalogError> {
        let body = serde_json::to_vec(&body).expect("JSON");
        let credential =
            self.credentials
                .get_credential()
                .await
                .map_err(|e| CatalogError::Unreachable {
                    catalog: KIND,
                    message: format!("AWS credentials: {e}"),
                })?;
        let headers = sigv4::sign_post(
            &credential,
            "glue",
            &self.region,
            &self.endpoint,
            &[
                ("content-type", "application/x-amz-json-1.1".to_string()),
                ("x-amz-target", format!("AWSGlue.{target}")),
            ],
            &body,
        )
        .map_err(|message| CatalogError::Refused {
            catalog: KIND,
            what: target.to_string(),
            message,
        })?;
        let response = self
            .http
            .post(self.endpoint.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(KIND, target, &e))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(KIND, target, &e))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(Ok(value));
        }
        let kind = value["__type"]
            .as_str()
            .or_else(|| value["code"].as_str())
            .unwrap_or_default();
        // `aws.protocols#…#ThrottlingException` style names: keep the last part.
        let kind = kind.rsplit(['#', ':']).next().unwrap_or(kind).to_string();
        let message = value["message"]
            .as_str()
            .or_else(|| value["Message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(300).collect());
        if kind.contains("Throttling") || kind.contains("ConcurrentModification") {
            return Err(http_error(
                KIND,
                target,
                Some(503),
                format!("{kind}: {message}"),
            ));
        }
        if status >= 500 || status == 408 || status == 429 {
            return Err(http_error(
                KIND,
                target,
                Some(status),
                format!("{kind}: {message}"),
            ));
        }
        Ok(Err(GlueFault { kind, message }))
    }

    /// `GetPartition`, `change` its input, `UpdatePartition`.
    async fn update(
        &self,
        t: &CatalogTable,
        path: &str,
        values: &[String],
        change: impl FnOnce(&mut Value),
    ) -> Result<(), CatalogError> {
        let what = format!("UpdatePartition {}.{} {path}", t.database, t.table);
        let got = self
            .call(
                "GetPartition",
                json!({"DatabaseName": t.database, "TableName": t.table, "PartitionValues": values}),
            )
            .await?
            .map_err(|f| f.refused(&what))?;
        let p = &got["Partition"];
        let mut input = json!({
            "Values": values,
            "StorageDescriptor": p["StorageDescriptor"],
            "Parameters": p["Parameters"].as_object().cloned().unwrap_or_default(),
        });
        change(&mut input);
        self.call(
            "UpdatePartition",
            json!({"DatabaseName": t.database, "TableName": t.table, "PartitionValueList": values, "PartitionInput": input}),
        )
        .await?
        .map_err(|f| f.refused(&what))?;
        Ok(())
    }

    async fn get_table(&self, t: &CatalogTable) -> Result<Option<Value>, CatalogError> {
        match self
            .call(
                "GetTable",
                json!({"DatabaseName": t.database, "Name": t.table}),
            )
            .await?
        {
            Ok(v) => Ok(Some(v["Table"].clone())),
            Err(f) if f.kind == "EntityNotFoundException" => Ok(None),
            Err(f) => Err(f.refused(&format!("GetTable {}.{}", t.database, t.table))),
        }
    }

    async fn create(&self, t: &CatalogTable) -> Result<(), CatalogError> {
        match self
            .call(
                "CreateDatabase",
                json!({"DatabaseInput": {"Name": t.database}}),
            )
            .await?
        {
            Ok(_) => tracing::info!(database = %t.database, "Glue database created"),
            Err(f) if f.kind == "AlreadyExistsException" => {}
            Err(f) => return Err(f.refused(&format!("CreateDatabase {}", t.database))),
        }
        match self
            .call(
                "CreateTable",
                json!({"DatabaseName": t.database, "TableInput": table_input(t)}),
            )
            .await?
        {
            Ok(_) => {
                tracing::info!(database = %t.database, table = %t.table, "Glue table created");
                Ok(())
            }
            Err(f) if f.kind == "AlreadyExistsException" => Ok(()),
            Err(f) => Err(f.refused(&format!("CreateTable {}.{}", t.database, t.table))),
        }
    }

    async fn partitions(&self, t: &CatalogTable) -> Result<Vec<String>, CatalogError> {
        let mut paths = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req =
                json!({"DatabaseName": t.database, "TableName": t.table, "MaxResults": 1000});
            if let Some(tok) = &token {
                req["NextToken"] = json!(tok);
            }
            let v = self
                .call("GetPartitions", req)
                .await?
                .map_err(|f| f.refused(&format!("GetPartitions {}.{}", t.database, t.table)))?;
            for p in v["Partitions"].as_array().into_iter().flatten() {
                let values: Vec<&str> = p["Values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if values.len() == t.partition_columns.len() {
                    paths.push(
                        t.partition_columns
                            .iter()
                            .zip(values)
                            .map(|(c, v)| {
                                // Glue holds logical values; the known set holds paths.
                                let mut escaped = String::with_capacity(v.len());
                                crate::route::escape::escape_partition_value(v, &mut escaped);
                                format!("{c}={escaped}")
                            })
                            .collect::<Vec<_>>()
                            .join("/"),
                    );
                }
            }
            match v["NextToken"].as_str() {
                Some(tok) if !tok.is_empty() => token = Some(tok.to_string()),
                _ => return Ok(paths),
            }
        }
    }
}

/// A Glue error answer that retrying will not fix (or that the caller handles).
struct GlueFault {
    kind: String,
    message: String,
}

impl GlueFault {
    fn refused(self, what: &str) -> CatalogError {
        CatalogError::Refused {
            catalog: KIND,
            what: what.to_string(),
            message: format!("{}: {}", self.kind, self.message),
        }
    }
}

/// The table definition `create_table` uses: data columns from the table's schema (as
/// `lakesink ddl` declares them), partition columns as strings, the format's SerDe.
pub fn table_input(t: &CatalogTable) -> Value {
    let parameters = match t.format {
        Format::JsonGz => {
            json!({"EXTERNAL": "TRUE", "classification": "json", "compressionType": "gzip"})
        }
        Format::Parquet => json!({"EXTERNAL": "TRUE", "classification": "parquet"}),
    };
    json!({
        "Name": t.table,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": parameters,
        "PartitionKeys": t.partition_columns.iter().map(|c| json!({"Name": c, "Type": "string"})).collect::<Vec<_>>(),
        "StorageDescriptor": storage_descriptor(t),
    })
}

fn storage_descriptor(t: &CatalogTable) -> Value {
    let columns: Vec<Value> = t
        .columns
        .iter()
        .map(|(name, ty)| json!({"Name": name, "Type": ty}))
        .collect();
    let location = &t.location;
    match t.format {
        Format::Parquet => json!({
            "Columns": columns,
            "Location": location,
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "Compressed": false,
            "SerdeInfo": {
                "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                "Parameters": {"serialization.format": "1"}
            }
        }),
        Format::JsonGz => json!({
            "Columns": columns,
            "Location": location,
            "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "Compressed": true,
            "SerdeInfo": {
                "SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe",
                "Parameters": {"serialization.format": "1", "ignore.malformed.json": "FALSE"}
            }
        }),
    }
}

impl Catalog for Glue {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn load<'a>(
        &'a self,
        t: &'a CatalogTable,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, CatalogError>> {
        Box::pin(async move {
            let table =
                super::table_or_create(KIND, t, || self.get_table(t), || self.create(t)).await?;
            let keys: Vec<&str> = table["PartitionKeys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k["Name"].as_str())
                .collect();
            super::check_partition_keys(KIND, t, &keys)?;
            let mut sd = table["StorageDescriptor"].clone();
            if !sd.is_object() {
                sd = storage_descriptor(t);
            }
            self.descriptors.keep(&t.name, sd);
            Ok(Some(self.partitions(t).await?))
        })
    }

    fn register<'a>(
        &'a self,
        t: &'a CatalogTable,
        partitions: &'a [&'a NewPartition],
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            let sd = self.descriptors.get_or(&t.name, || storage_descriptor(t));
            for chunk in partitions.chunks(BATCH) {
                let inputs: Vec<Value> = chunk
                    .iter()
                    .map(|p| {
                        let mut sd = sd.clone();
                        sd["Location"] = json!(p.location);
                        json!({"Values": p.values(), "StorageDescriptor": sd, "Parameters": {}})
                    })
                    .collect();
                let v = self
                    .call(
                        "BatchCreatePartition",
                        json!({"DatabaseName": t.database, "TableName": t.table, "PartitionInputList": inputs}),
                    )
                    .await?
                    .map_err(|f| f.refused(&format!("BatchCreatePartition {}.{}", t.database, t.table)))?;
                for e in v["Errors"].as_array().into_iter().flatten() {
                    let code = e["ErrorDetail"]["ErrorCode"].as_str().unwrap_or_default();
                    if code == "AlreadyExistsException" {
                        continue;
                    }
                    let message = e["ErrorDetail"]["ErrorMessage"]
                        .as_str()
                        .unwrap_or_default();
                    let fault = GlueFault {
                        kind: code.to_string(),
                        message: format!("partition {}: {message}", e["PartitionValues"]),
                    };
                    if code.contains("Throttling")
                        || code.contains("InternalService")
                        || code.contains("ConcurrentModification")
                        || code.contains("OperationTimeout")
                    {
                        return Err(http_error(
                            KIND,
                            "BatchCreatePartition",
                            Some(503),
                            format!("{}: {}", fault.kind, fault.message),
                        ));
                    }
                    return Err(
                        fault.refused(&format!("BatchCreatePartition {}.{}", t.database, t.table))
                    );
                }
            }
            Ok(())
        })
    }

    fn relocate<'a>(
        &'a self,
        t: &'a CatalogTable,
        path: &'a str,
        location: &'a str,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            let values = super::partition_values(path);
            self.update(t, path, &values, |p| {
                p["StorageDescriptor"]["Location"] = json!(location);
            })
            .await
        })
    }

    fn seal<'a>(
        &'a self,
        t: &'a CatalogTable,
        s: &'a SealedPartition,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            let values = s.values();
            self.update(t, &s.path, &values, |p| {
                for (k, v) in s.parameters() {
                    p["Parameters"][k] = json!(v);
                }
            })
            .await
        })
    }
}
