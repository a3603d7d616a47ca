//! Drop-behind for a partition log (see `page_cache.rs`): the broker calls
//! [`PartitionLog::drop_behind`] periodically. The bytes kept cached are the log's newest, across
//! segments: after a roll, the sealed segment's end stays until the new one holds `keep` bytes.

use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use super::PartitionLog;
use crate::error::{LogError, Result};
use crate::page_cache::drop_pages;

impl PartitionLog {
    /// Writes back and drops from the page cache what lies more than `keep_bytes` behind the
    /// log's end, in the segments written since drop-behind began following this log. The files
    /// are advised outside the log's lock; appends go on meanwhile. Every file is advised even
    /// when one fails; the first failure is returned.
    pub fn drop_behind(&self, keep_bytes: u64) -> Result<()> {
        let advice: Vec<(Arc<File>, PathBuf, Range<u64>)> = {
            let mut state = self.lock();
            let state = &mut *state;
            let active_base = state.active().base_offset();
            let from = state.drop_behind.first_base(active_base);
            let segments: Vec<(i64, u64)> = state
                .segments
                .range(from..)
                .map(|(&base, segment)| (base, segment.size()))
                .collect();
            let plan = state.drop_behind.plan(&segments, keep_bytes);
            plan.into_iter()
                .filter_map(|(base, range)| {
                    let (file, path) = state.segments.get(&base)?.data_file();
                    Some((file, path, range))
                })
                .collect()
        };
        let mut first_error = Ok(());
        for (file, path, range) in advice {
            if let Err(e) = drop_pages(&file, range) {
                first_error = first_error.and(Err(LogError::io(&path, e)));
            }
        }
        first_error
    }
}
