//! Strata's background compaction and retention service.
//!
//! This crate is deliberately empty until compaction across both tiers is built: today local
//! retention (deleting whole segments by time and size) lives with the local log in
//! `strata-tiering`, where it needs no I/O of its own. Compaction (`cleanup.policy=compact`),
//! retention across the bucket and the unreferenced-object sweep will run here, in-process in the
//! single-node default or as a standalone service.
