//! The coordinator over an in-memory log.
