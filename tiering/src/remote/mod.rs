//! The remote tier: sealed segments offloaded to object storage, a per-partition manifest, and
//! reads back through a chunk cache.
//!
//! # Objects
//! All key naming lives in [`paths`]. Per partition, under a hash-spread prefix:
//! - `segments/<base offset>-<epoch>-<upload id>.seg` — one object per sealed segment: the `.log`
//!   bytes, then the offset index, then the time index (sizes recorded in the manifest, so a reader
//!   fetches only the range it needs). The upload id is fresh for every attempt, so a retried or
//!   crashed upload never overwrites an object a manifest may list.
//! - `manifests/<version>-<writer id>.json` — manifest versions, each written once under a key
//!   of its own and never overwritten (two writers racing for version `n + 1` write two objects;
//!   the pointer names the winner's, the sweep removes the loser's).
//!
//! The metadata store holds only a pointer per partition, `{version, key}` of the current
//! manifest, updated with compare-and-set (see [`ManifestPointers`]). Its size per partition is
//! constant (about 150 bytes) however much history the bucket holds.
//!
//! # Offload protocol: what is written in which order
//! 1. A segment is sealed locally (indexes written) and fsynced: by the flush scheduler, or by the
//!    offload pass itself before it picks segments (`log/recovery.rs`). A leader back from a power
//!    loss thus never holds less than the bucket, and never reuses an offset the bucket has.
//! 2. The uploader PUTs the segment object (multipart above the part size) under a fresh key.
//!    A PUT that returned is durable: on S3 by its contract, on a `file://` store because the
//!    object and its directory are fsynced before the PUT returns.
//! 3. It PUTs manifest version `n + 1`, which lists every segment of version `n` plus the new one.
//! 4. It moves the pointer from `n` to `n + 1` with compare-and-set. A failed compare means another
//!    writer (a newer leader) moved it: this uploader stops; its objects are unreferenced.
//! 5. Only now may local retention delete the local copy: a local segment is deletable only when
//!    the durable manifest lists offsets up to its end (`remote_end_offset`).
//!
//! # What a crash leaves behind, and who cleans it up
//! - Crash during or after 2, before 4: a segment object no manifest lists. The local segment is
//!   still there and is uploaded again under a new key. The unreferenced object is removed by the
//!   sweep of the compaction service after a grace period (never an object a manifest lists).
//! - Crash after 3, before 4: an unreferenced manifest object; same sweep.
//! - Crash after 4: nothing to clean; the next uploader continues from the pointer's manifest, so
//!   there are no duplicates and no gaps (it uploads the first local segment at or past the
//!   manifest's end offset).
//! - Object store down or throttling: steps 2–4 are retried with exponential backoff and jitter;
//!   local segments stay until uploaded; produce is never blocked by the remote tier.
//!
//! # A metadata store restored from a backup
//! The pointer then names an older manifest than the bucket's newest (maybe one swept since),
//! and the segments offloaded after the backup, some with no local copy left, are listed only by
//! newer manifests. A broker that holds a manifest the pointer is behind (an older version, or
//! another manifest of the same version) keeps it when it reads the pointer again, unless the
//! pointer's manifest holds a segment of a leader epoch it does not reach (a newer leader
//! published on the old pointer: its word stands), and the leader publishes it again as the next
//! version before offloading. The sweep keeps whatever manifests above the pointer's version
//! name. Not recovered: a partition whose leader after the restore never held the newest manifest
//! (leadership moved, or every replica restarted) builds on the old one, and once its versions
//! pass the newer manifests' the sweep deletes what only those named.
//!
//! The sweep is [`sweep::sweep_partition`]: it lists the partition's root, then reads the pointer
//! and its manifest, and deletes every object that manifest does not name (nor is) once it is
//! older than the grace period. Listing before reading the pointer keeps uploads in flight safe;
//! the grace must exceed the time from an upload to its publication and how long a broker may keep
//! using a stale manifest. The choice itself is the pure [`sweep::plan_sweep`].
//!
//! # Reads
//! An offset below the local log start but at or above the remote log start is read remotely:
//! the manifest gives the segment, the segment's offset index (fetched once, cached) gives the
//! byte position, and whole batches are read from fixed-size chunks fetched with ranged GETs
//! through a `foyer` hybrid (memory + disk) cache. Every batch read remotely is checked against
//! its CRC before it is served. After each read the next chunks are prefetched, continuing into
//! the next segment, by one GET of the rest of each segment that delivers chunks only as far as
//! the reader's window reaches ([`pace`]). Readers never LIST the bucket: the manifest names every
//! object.

pub mod cache;
pub mod chunk_memory;
pub mod limiter;
pub mod local_bucket;
pub mod manifest;
pub mod metrics;
pub mod pace;
pub mod partition;
pub mod paths;
pub mod pointer;
pub mod reader;
pub mod store;
pub mod sweep;
pub mod uploader;

pub use manifest::{Manifest, RemoteSegment};
pub use partition::{RemotePartition, RemoteTier};
pub use pointer::{ManifestPointer, ManifestPointers, SwapGuard};
