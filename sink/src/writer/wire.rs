//! Records of registry tables as the pipeline reads them: Confluent-framed JSON Schema records
//! without their header, Avro records decoded to JSON, each with its schema id.

use super::{WriteError, WriterCtx};
use crate::config::TablePlan;
use crate::route::RouteError;

/// A record of a registry table as the JSON the pipeline reads, with its schema id: a
/// Confluent-framed JSON Schema record without its header, an Avro one decoded into `json`;
/// a plain JSON record as it is, under the subject's latest id. The inner error is a bad
/// record (unknown id, undecodable data); the outer one stops the daemon (registry
/// unreachable for too long, a refused schema).
#[allow(clippy::type_complexity)]
pub(super) fn unwrap_wire<'a>(
    ctx: &WriterCtx,
    table: &TablePlan,
    payload: Option<&'a [u8]>,
    json: &'a mut String,
) -> Result<Result<(Option<&'a [u8]>, Option<u32>), RouteError>, WriteError> {
    use lakesink_schema_registry::registry::RegistryError;
    let Some(reg) = &table.registry else {
        return Ok(Ok((payload, None)));
    };
    let Some((id, body)) = payload.and_then(lakesink_schema_registry::wire::split) else {
        return Ok(Ok((payload, reg.latest_id())));
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
    match &ws.avro {
        Some(d) => {
            json.clear();
            match d.to_json(body, json) {
                Ok(()) => Ok(Ok((Some(json.as_bytes()), Some(id)))),
                Err(e) => Ok(Err(RouteError::Wire(format!(
                    "Avro record of schema id {id}: {e}"
                )))),
            }
        }
        None => Ok(Ok((Some(body), Some(id)))),
    }
}
