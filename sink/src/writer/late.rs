//! Records for partitions that the table's watermark has sealed: refused with
//! `late_after_seal = "dlq"`, or written where readers see them when the partition was
//! compacted.

use super::{WriteError, WriterCtx};
use crate::config::TablePlan;

/// Where a new file of `table`'s partition `path` goes when the partition may be compacted:
/// the table compacts and the event's partition is sealed by the table's watermark as it
/// stands (only a sealed partition is compacted). Then the partition's newest compaction, if
/// any, names the directory its readers see (the catalog's location), and a late record lands
/// there, visible at once, instead of in the partition's own directory, which the catalog no
/// longer reads (see `docs/DESIGN.md`, "Compaction"). Asks the store: only late records pay.
pub(super) fn compacted_place(
    ctx: &WriterCtx,
    table: &TablePlan,
    path: &str,
    event_micros: i64,
) -> Result<Option<String>, WriteError> {
    if table.compact.is_none() {
        return Ok(None);
    }
    let Some(w) = ctx.watermarks.get(&table.name) else {
        return Ok(None);
    };
    if !late_after_seal(table, event_micros, w) {
        return Ok(None);
    }
    let store = &ctx.store;
    ctx.rt
        .block_on(crate::seal::compactions::location(
            store,
            ctx.root.trim_matches('/'),
            &table.name,
            path,
        ))
        .map_err(|source| {
            WriteError::Claim(crate::claim::ClaimError::Store {
                key: format!("compactions of {}/{path}", table.name),
                source,
            })
        })
}

/// Whether an event at `event_micros` goes to a partition of `table` whose span ends at or
/// before the watermark `w`: sealed, for `late_after_seal = "dlq"`. (The span ends after the
/// event, so only an event before the watermark can be; the span is computed only then.)
pub(crate) fn late_after_seal(table: &TablePlan, event_micros: i64, w: i64) -> bool {
    event_micros < w
        && table
            .partition
            .span_end(&table.timezone, event_micros)
            .is_some_and(|end| end <= w)
}
