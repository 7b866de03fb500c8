//! Where a Parquet table's direct path parses a record before its file is known.
//!
//! Records of a Kafka partition mostly go to the file the one before went to (the same hour), so
//! the record is parsed straight into that file's open rows; if it routes elsewhere (a late
//! record, a new hour), its row moves out, and on a bad record it is cut off again. Without a
//! file to guess (the first record, a file just cut), the record is parsed into a staging row.
//! Copying every row from a staging row into its file cost ~10 % of a Parquet run's workers.

use std::collections::HashMap;

use super::files::OpenFile;
use crate::encode::parquet::direct::{JsonDirect, JsonRows};

/// One router slot's parsing state.
#[derive(Default)]
pub(super) struct Parsing {
    /// One record's worth of builders, for when there is no file to guess.
    staging: Option<JsonRows>,
    /// The partition path of the file the last parsed record went to.
    last: Option<String>,
}

/// Where the record being routed was parsed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Row {
    /// Not parsed: the record takes the old way.
    None,
    /// Row 0 of the staging rows.
    Staged,
    /// This row of the open rows of the file at `last`.
    InLast(usize),
}

impl Parsing {
    /// The rows to parse the next record into, and where its row will be.
    pub(super) fn target<'a>(
        &'a mut self,
        files: &'a mut HashMap<String, OpenFile>,
        direct: &JsonDirect,
    ) -> (&'a mut JsonRows, Row) {
        let guess = self
            .last
            .as_deref()
            .and_then(|p| files.get_mut(p))
            .and_then(|f| f.encoder.parsed_rows());
        match guess {
            Some(rows) => {
                let at = rows.len();
                (rows, Row::InLast(at))
            }
            None => {
                let rows = self.staging.get_or_insert_with(|| direct.rows());
                rows.truncate(0);
                (rows, Row::Staged)
            }
        }
    }

    /// The record was refused (a bad record): a row parsed for it at `row` (where
    /// [`Parsing::target`] said it would be) is cut off; a staged one is emptied by the next
    /// record's [`Parsing::target`].
    pub(super) fn undo(&mut self, files: &mut HashMap<String, OpenFile>, row: Row) {
        if let Row::InLast(at) = row {
            if let Some(rows) = self.last_rows(files) {
                rows.truncate(at);
            }
        }
    }

    /// The record goes to the file at `path`: a row parsed into another file moves to the
    /// staging rows. Returns where the row is now.
    pub(super) fn place(
        &mut self,
        files: &mut HashMap<String, OpenFile>,
        row: Row,
        path: &str,
        direct: &JsonDirect,
    ) -> Row {
        let Row::InLast(at) = row else {
            return row;
        };
        if self.last.as_deref() == Some(path) {
            return row;
        }
        let staging = self.staging.get_or_insert_with(|| direct.rows());
        staging.truncate(0);
        let last = self.last.as_deref().and_then(|p| files.get_mut(p));
        let rows = last
            .and_then(|f| f.encoder.parsed_rows())
            .expect("the row was parsed into this file");
        staging.push_row(rows, at);
        rows.truncate(at);
        Row::Staged
    }

    /// The staging rows (after [`Row::Staged`]).
    pub(super) fn staged(&self) -> &JsonRows {
        self.staging.as_ref().expect("a staged row")
    }

    /// The record's row is in the file at `path` now.
    pub(super) fn went_to(&mut self, path: &str) {
        if self.last.as_deref() != Some(path) {
            self.last = Some(path.to_string());
        }
    }

    fn last_rows<'a>(&self, files: &'a mut HashMap<String, OpenFile>) -> Option<&'a mut JsonRows> {
        files
            .get_mut(self.last.as_deref()?)
            .and_then(|f| f.encoder.parsed_rows())
    }
}
