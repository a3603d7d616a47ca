//! Drop-behind for a partition log (see `page_cache.rs`): the broker's flush scheduler calls
//! [`PartitionLog::drop_behind`] after fsyncing sealed segments, so a segment sealed since the
//! last pass is clean and leaves the page cache at once.

use std::fs::File;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use super::PartitionLog;
use crate::error::{LogError, Result};
use crate::page_cache::drop_pages;

impl PartitionLog {
    /// Writes back and drops from the page cache what lies more than `keep_bytes` behind the
    /// log's end, in the active segment and in segments sealed since the last call. The files
    /// are advised outside the log's lock; appends go on meanwhile.
    pub fn drop_behind(&self, keep_bytes: u64) -> Result<()> {
        let advice: Vec<(Arc<File>, PathBuf, u64, Option<u64>)> = {
            let mut state = self.lock();
            let (base, size) = (state.active().base_offset(), state.active().size());
            let plan = state.drop_behind.plan(base, size, keep_bytes);
            let mut advice = Vec::new();
            if let Some((from, start)) = plan.sealed_from {
                let range = (Bound::Included(from), Bound::Excluded(base));
                for (&segment_base, segment) in state.segments.range(range) {
                    let (file, path) = segment.data_file();
                    let start = if segment_base == from { start } else { 0 };
                    advice.push((file, path, start, None));
                }
            }
            if let Some(range) = plan.active {
                let (file, path) = state.active().data_file();
                advice.push((file, path, range.start, Some(range.end)));
            }
            advice
        };
        for (file, path, start, end) in advice {
            drop_pages(&file, start, end).map_err(|e| LogError::io(&path, e))?;
        }
        Ok(())
    }
}
