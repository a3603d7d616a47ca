//! Uploading one sealed segment as one object: the `.log` bytes, then the offset index, then the
//! time index. Small segments go in one PUT; larger ones as a multipart upload of `part_bytes`
//! parts, read from disk piece by piece so memory stays bounded. A [`RateLimiter`] spreads them.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::limiter::RateLimiter;
use super::local_bucket::{LocalBucket, StagedObject};
use super::manifest::RemoteSegment;
use super::metrics::TieringMetrics;
use crate::error::{LogError, Result};
use crate::log::SealedSegment;
use crate::page_cache;

/// How many parts of one multipart upload are in flight at once.
const PART_CONCURRENCY: usize = 4;

/// Where and how segments are uploaded.
#[derive(Debug)]
pub struct Uploader {
    /// The (instrumented) store.
    pub store: Arc<dyn ObjectStore>,
    /// Size of multipart parts; segments up to this size go in one PUT.
    pub part_bytes: usize,
    /// The upload rate limit.
    pub limiter: RateLimiter,
    /// Whether what an upload reads of a segment is dropped from the page cache once read (the
    /// broker's drop-behind, `page_cache.rs`): an upload reads a sealed segment once. This
    /// includes a just-sealed segment's newest bytes, which drop-behind would keep a while.
    pub drop_read_pages: bool,
    /// A `file://` bucket whose objects are dropped from the page cache as they are written.
    pub local_bucket: Option<Arc<LocalBucket>>,
    /// Counters.
    pub metrics: TieringMetrics,
}

/// Reads the next `len` bytes of `file`, one syscall per [`page_cache::SYSCALL_BYTES`] at
/// most: a long read would hold a core in the kernel.
fn read_in_pieces(file: &mut std::fs::File, len: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0; len];
    for piece in bytes.chunks_mut(page_cache::SYSCALL_BYTES as usize) {
        file.read_exact(piece).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                std::io::Error::other("segment shorter than its recorded size")
            }
            _ => e,
        })?;
    }
    Ok(bytes)
}

/// Reads the next `len` bytes of `file`, which start at `position`, as one part; the CRC-32C
/// `crc` extended over them. With `drop_pages`, the part's pages leave the page cache after.
fn read_part(
    file: &mut std::fs::File,
    position: u64,
    len: usize,
    crc: u32,
    drop_pages: bool,
) -> std::io::Result<(Bytes, u32)> {
    let part = read_in_pieces(file, len)?;
    if drop_pages && let Err(e) = page_cache::drop_pages(file, position..position + len as u64) {
        // Advice only: the upload goes on with the pages cached.
        tracing::debug!(error = %e, "could not drop an uploaded part from the page cache");
    }
    let crc = crc32c::crc32c_append(crc, &part);
    Ok((Bytes::from(part), crc))
}

/// `bytes` in pieces of at most [`page_cache::SYSCALL_BYTES`] (sharing its buffer), which a
/// `file://` bucket writes with one syscall each.
fn in_pieces(mut bytes: Bytes) -> PutPayload {
    let mut pieces = Vec::new();
    while !bytes.is_empty() {
        let piece = bytes.len().min(page_cache::SYSCALL_BYTES as usize);
        pieces.push(bytes.split_to(piece));
    }
    pieces.into_iter().collect()
}

/// Reads a whole (index) file in pieces, off the async workers.
async fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&owned)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
        read_in_pieces(&mut file, len)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|read| read)
    .map_err(|e| LogError::io(path, e))
}

impl Uploader {
    /// Uploads `segment` to `key` and describes the object for the manifest.
    pub async fn upload(
        &self,
        segment: &SealedSegment,
        key: &Path,
        leader_epoch: i32,
    ) -> Result<RemoteSegment> {
        let offset_index = read_file(&segment.offset_index_path).await?;
        let time_index = read_file(&segment.time_index_path).await?;
        let (offset_index_bytes, time_index_bytes) =
            (offset_index.len() as u64, time_index.len() as u64);
        let total = segment.size as usize + offset_index.len() + time_index.len();
        let crc = if total <= self.part_bytes {
            let (log, crc) = self.read_whole(segment).await?;
            let mut object = Vec::from(log);
            object.extend_from_slice(&offset_index);
            object.extend_from_slice(&time_index);
            let crc = crc32c::crc32c_append(crc32c::crc32c_append(crc, &offset_index), &time_index);
            self.limiter.acquire(object.len()).await;
            self.store
                .put(key, in_pieces(Bytes::from(object)))
                .await
                .map_err(|e| LogError::object_store(key, e))?;
            crc
        } else {
            self.upload_multipart(segment, key, [offset_index, time_index])
                .await?
        };
        self.drop_uploaded(key).await;
        self.metrics.uploaded_bytes.inc_by(total as u64);
        self.metrics.uploaded_segments.inc();
        Ok(RemoteSegment {
            key: key.to_string(),
            base_offset: segment.base_offset,
            next_offset: segment.next_offset,
            first_timestamp: segment.first_timestamp,
            max_timestamp: segment.max_timestamp,
            log_bytes: segment.size,
            offset_index_bytes,
            time_index_bytes,
            leader_epoch,
            crc32c: crc,
        })
    }

    /// Reads a segment small enough for one PUT, off the async workers; its CRC-32C.
    async fn read_whole(&self, segment: &SealedSegment) -> Result<(Bytes, u32)> {
        let path = segment.log_path.clone();
        let (size, drop_pages) = (segment.size as usize, self.drop_read_pages);
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&path)
                .and_then(|mut file| read_part(&mut file, 0, size, 0, drop_pages))
                .map_err(|e| LogError::io(&path, e))
        })
        .await
        .map_err(|e| LogError::io(&segment.log_path, std::io::Error::other(e)))?
    }

    /// Drops a `file://` bucket's object just uploaded from the page cache.
    async fn drop_uploaded(&self, key: &Path) {
        let Some(bucket) = self.local_bucket.clone() else {
            return;
        };
        let key = key.clone();
        // Advice only: a failed task changes nothing about the upload.
        let _ = tokio::task::spawn_blocking(move || bucket.drop_object(&key)).await;
    }

    async fn upload_multipart(
        &self,
        segment: &SealedSegment,
        key: &Path,
        indexes: [Vec<u8>; 2],
    ) -> Result<u32> {
        let failed = |e| LogError::object_store(key, e);
        let upload = self.store.put_multipart(key).await.map_err(failed)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_bytes);
        // Parts handed over but not yet written: what the staging file's drop-behind leaves.
        let in_flight = ((PART_CONCURRENCY + 1) * self.part_bytes) as u64;
        let mut staged: Option<StagedObject> = match self.local_bucket.clone() {
            Some(bucket) => {
                let key = key.clone();
                tokio::task::spawn_blocking(move || bucket.staged(&key, in_flight))
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        };
        let written = async {
            let path = segment.log_path.clone();
            let mut file = std::fs::File::open(&path).map_err(|e| LogError::io(&path, e))?;
            let mut crc = 0u32;
            let mut left = segment.size;
            while left > 0 {
                let want = self.part_bytes.min(8 << 20).min(left as usize);
                writer
                    .wait_for_capacity(PART_CONCURRENCY)
                    .await
                    .map_err(failed)?;
                self.limiter.acquire(want).await;
                // Read straight into the part's own buffer, off the async workers: one copy
                // from the page cache, none between buffers.
                let path = path.clone();
                let (position, drop_pages) = (segment.size - left, self.drop_read_pages);
                let mut staging = staged.take();
                let (part, returned) = tokio::task::spawn_blocking(move || {
                    if let Some(staging) = &mut staging {
                        staging.handed_over(position);
                    }
                    read_part(&mut file, position, want, crc, drop_pages)
                        .map(|(part, crc)| ((part, crc), (file, staging)))
                        .map_err(|e| LogError::io(&path, e))
                })
                .await
                .map_err(|e| LogError::io(&segment.log_path, std::io::Error::other(e)))??;
                (file, staged) = returned;
                crc = part.1;
                for piece in in_pieces(part.0) {
                    writer.put(piece);
                }
                left -= want as u64;
            }
            for index in indexes {
                crc = crc32c::crc32c_append(crc, &index);
                for piece in in_pieces(Bytes::from(index)) {
                    writer.put(piece);
                }
            }
            Ok::<_, LogError>(crc)
        }
        .await;
        match written {
            Ok(crc) => {
                writer.finish().await.map_err(failed)?;
                Ok(crc)
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key = %key, error = %abort, "aborting a failed multipart upload failed");
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, Write};

    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn payloads_are_handed_over_in_pieces_of_at_most_one_syscall() {
        let step = page_cache::SYSCALL_BYTES as usize;
        for len in [0, 1, step, step + 1, 3 * step + 5] {
            let data = pattern(len);
            let payload = in_pieces(Bytes::from(data.clone()));
            let pieces: Vec<&[u8]> = payload.iter().map(|p| p.as_ref()).collect();
            assert!(
                pieces.iter().all(|p| !p.is_empty() && p.len() <= step),
                "{len}"
            );
            assert_eq!(pieces.len(), len.div_ceil(step), "{len}");
            assert_eq!(pieces.concat(), data, "{len}");
        }
    }

    #[test]
    fn parts_read_in_pieces_are_whole_and_checksummed() {
        let data = pattern(3 * page_cache::SYSCALL_BYTES as usize + 123);
        let mut file = tempfile::tempfile().expect("file");
        file.write_all(&data).expect("write");
        file.rewind().expect("rewind");
        let first = 1000;
        let (head, crc) = read_part(&mut file, 0, first, 0, false).expect("head");
        let rest = data.len() - first;
        let (tail, crc) = read_part(&mut file, first as u64, rest, crc, true).expect("tail");
        assert_eq!([head, tail].concat(), data);
        assert_eq!(crc, crc32c::crc32c(&data));
        let short = read_part(&mut file, data.len() as u64, 1, 0, false);
        assert!(
            short.is_err(),
            "a segment shorter than its size is an error"
        );
        file.rewind().expect("rewind");
        let cut = read_part(&mut file, 0, data.len() + 10, 0, false);
        assert!(
            cut.is_err(),
            "bytes then the end of the file is an error too"
        );
    }

    /// A sealed segment of `log_len` bytes with index files of the given sizes, in `dir`.
    fn segment(dir: &std::path::Path, log_len: usize, index_lens: [usize; 2]) -> SealedSegment {
        let write = |name: &str, len: usize, seed: usize| {
            let path = dir.join(name);
            let bytes: Vec<u8> = (0..len).map(|i| ((i + seed) * 13 % 251) as u8).collect();
            std::fs::write(&path, bytes).expect("write");
            path
        };
        SealedSegment {
            base_offset: 0,
            next_offset: 10,
            size: log_len as u64,
            first_timestamp: 0,
            max_timestamp: 0,
            log_path: write("0.log", log_len, 0),
            offset_index_path: write("0.index", index_lens[0], 1),
            time_index_path: write("0.timeindex", index_lens[1], 2),
        }
    }

    #[tokio::test]
    async fn uploads_through_a_local_bucket_keep_every_byte_in_order() {
        let mib = page_cache::SYSCALL_BYTES as usize;
        let dir = tempfile::tempdir().expect("dir");
        let bucket_dir = dir.path().join("bucket");
        std::fs::create_dir_all(&bucket_dir).expect("bucket");
        let url = format!("file://{}", bucket_dir.display());
        let store: Arc<dyn ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(&bucket_dir).expect("store"),
        );
        let segment = segment(dir.path(), 3 * mib + 5, [2 * mib + 1, mib + 7]);
        let mut expected = std::fs::read(&segment.log_path).expect("log");
        expected.extend(std::fs::read(&segment.offset_index_path).expect("index"));
        expected.extend(std::fs::read(&segment.time_index_path).expect("time index"));
        // Multipart with parts that are not whole pieces, and one PUT.
        for (part_bytes, key) in [(mib + 3, "multipart"), (16 * mib, "single")] {
            let uploader = Uploader {
                store: Arc::clone(&store),
                part_bytes,
                limiter: RateLimiter::new(0),
                drop_read_pages: true,
                local_bucket: LocalBucket::for_url(&url).map(Arc::new),
                metrics: TieringMetrics::default(),
            };
            let key = Path::from(key);
            let remote = uploader.upload(&segment, &key, 3).await.expect("upload");
            let object = store
                .get(&key)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            assert_eq!(object.as_ref(), expected.as_slice(), "{key}");
            assert_eq!(remote.crc32c, crc32c::crc32c(&expected), "{key}");
            assert_eq!(remote.log_bytes, segment.size);
        }
    }
}
