//! Records of registry tables as the pipeline reads them: Confluent-framed JSON Schema records
//! without their header, Avro records decoded to JSON (or, for a Parquet table whose schema the
//! direct path covers, kept as Avro), each with its schema id.

use super::{WriteError, WriterCtx};
use crate::config::TablePlan;
use crate::encode::parquet::direct::{JsonDirect, JsonRows};
use crate::route::{RecordRef, RouteError, Routed, TableRouter};

/// A record of a registry table as the pipeline reads it.
#[derive(Clone, Copy)]
pub(super) struct Unwrapped<'a> {
    /// What the router reads: the record's JSON, or for a directly decoded Avro record a JSON
    /// object of only the fields the table routes by.
    pub route: Option<&'a [u8]>,
    /// What the file's encoder is given: the same JSON, or the Avro datum.
    pub encode: Option<&'a [u8]>,
    pub schema_id: Option<u32>,
}

/// A record of a registry table as the JSON the pipeline reads, with its schema id: a
/// Confluent-framed JSON Schema record without its header, an Avro one decoded into `json`;
/// a plain JSON record as it is, under the subject's latest id. The Avro record of a Parquet
/// table whose schema the direct path covers is read whole (and validated) but only its routed
/// fields are written to `json`; its encoder decodes the datum into Arrow. The inner error is a
/// bad record (unknown id, undecodable data); the outer one stops the daemon (registry
/// unreachable for too long, a refused schema).
pub(super) fn unwrap_wire<'a>(
    ctx: &WriterCtx,
    table: &TablePlan,
    router: &TableRouter,
    payload: Option<&'a [u8]>,
    json: &'a mut String,
) -> Result<Result<Unwrapped<'a>, RouteError>, WriteError> {
    use lakesink_schema_registry::registry::RegistryError;
    let plain = |payload, schema_id| Unwrapped {
        route: payload,
        encode: payload,
        schema_id,
    };
    let Some(reg) = &table.registry else {
        return Ok(Ok(plain(payload, None)));
    };
    let Some((id, body)) = payload.and_then(lakesink_schema_registry::wire::split) else {
        return Ok(Ok(plain(payload, reg.latest_id())));
    };
    let ws = match reg.writer_schema(&ctx.rt, id) {
        Ok(ws) => ws,
        Err(e @ RegistryError::NotFound { .. }) => {
            return Ok(Err(RouteError::Wire(format!("schema id {id}: {e}"))))
        }
        Err(source) => {
            return Err(WriteError::Registry {
                table: table.name.clone(),
                source,
            })
        }
    };
    let Some(d) = &ws.avro else {
        return Ok(Ok(plain(Some(body), Some(id))));
    };
    let direct = table
        .parquet_options
        .as_ref()
        .is_some_and(|o| reg.direct(id, o).is_some());
    json.clear();
    let decoded = if direct {
        if body.len() as u64 > router.max_bytes() {
            return Ok(Err(RouteError::TooLarge {
                bytes: body.len(),
                max: router.max_bytes(),
            }));
        }
        d.project(body, router.paths(), json)
    } else {
        d.to_json(body, json)
    };
    match decoded {
        Ok(()) => Ok(Ok(Unwrapped {
            route: Some(json.as_bytes()),
            encode: Some(if direct { body } else { json.as_bytes() }),
            schema_id: Some(id),
        })),
        Err(e) => Ok(Err(RouteError::Wire(format!(
            "Avro record of schema id {id}: {e}"
        )))),
    }
}

/// Routes a record of a Parquet table with a direct path: parsed once, into a new last row of
/// `rows`, as it is routed (`true`); or, if the direct path does not take it, routed as
/// [`TableRouter::route`] does (`false`). On an error the caller cuts off a row it parsed
/// (`Parsing::undo`).
pub(super) fn route_parsed(
    router: &mut TableRouter,
    rec: &RecordRef<'_>,
    now_micros: i64,
    path: &mut String,
    direct: &JsonDirect,
    rows: &mut JsonRows,
) -> Result<(Routed, bool), RouteError> {
    let text = router.text(rec)?;
    let (found, parsed) = match direct.parse(text, router.paths(), rows) {
        Ok(found) => (found, true),
        Err(_) => (router.extract(text)?, false),
    };
    let routed = router.place(rec, &found, now_micros, path)?;
    Ok((routed, parsed))
}
