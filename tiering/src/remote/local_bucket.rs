//! Drop-behind for a bucket that is a local directory (`file://`): the objects an upload writes
//! there go through the page cache like the log does, a GiB per sealed segment, dirty until the
//! PUT's fsync writes it all at once. The uploader drops what it has written as it goes and the
//! whole object once it is durable (see `page_cache.rs` for why the page cache's growth is
//! costly). Reads of the object go through the chunk cache, which holds what a reader needs.
//!
//! object_store's `LocalFileSystem` writes a multipart upload to a staging file next to the
//! object, `<object path>#<n>` with the first free `n` from 1, and renames it into place on
//! completion. The staging name is not part of its API; the test below pins it, and a staging
//! file under another name is simply not advised (the upload is not affected).

use std::fs::File;
use std::path::PathBuf;

use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::page_cache::{DropBehind, drop_pages};

/// The files behind a `file://` bucket's keys.
#[derive(Debug)]
pub struct LocalBucket {
    files: LocalFileSystem,
}

impl LocalBucket {
    /// The bucket at `url` when it is a local directory.
    pub fn for_url(url: &str) -> Option<LocalBucket> {
        let parsed = url::Url::parse(url).ok()?;
        if parsed.scheme() != "file" {
            return None;
        }
        let root = parsed.to_file_path().ok()?;
        let files = LocalFileSystem::new_with_prefix(root).ok()?;
        Some(LocalBucket { files })
    }

    fn object_path(&self, key: &Path) -> Option<PathBuf> {
        self.files.path_to_filesystem(key).ok()
    }

    /// The staging file of the multipart upload to `key` just started (call it right after
    /// `put_multipart`; segment keys are never reused, so no other upload stages under the same
    /// name), to drop what is written more than `keep` bytes before the end of what the upload
    /// has handed over.
    pub fn staged(&self, key: &Path, keep: u64) -> Option<StagedObject> {
        let mut staged = self.object_path(key)?.into_os_string();
        staged.push("#1");
        let file = File::open(staged).ok()?;
        Some(StagedObject {
            file,
            plan: DropBehind::default(),
            keep,
        })
    }

    /// Drops the whole object at `key` from the page cache: once its PUT returned it is durable,
    /// so its pages are clean.
    pub fn drop_object(&self, key: &Path) {
        let Some(path) = self.object_path(key) else {
            return;
        };
        let dropped = File::open(&path).and_then(|file| {
            let len = file.metadata()?.len();
            drop_pages(&file, 0..len)
        });
        if let Err(e) = dropped {
            tracing::debug!(path = %path.display(), error = %e, "could not drop an uploaded object from the page cache");
        }
    }
}

/// A multipart upload's staging file, followed by drop-behind as the upload writes it.
#[derive(Debug)]
pub struct StagedObject {
    file: File,
    plan: DropBehind,
    keep: u64,
}

impl StagedObject {
    /// The upload has handed over its first `bytes` (the last `keep` of them may still be in
    /// flight): advises what lies before them.
    pub fn handed_over(&mut self, bytes: u64) {
        for (_, range) in self.plan.plan(&[(0, bytes)], self.keep) {
            if let Err(e) = drop_pages(&self.file, range) {
                tracing::debug!(error = %e, "could not drop a staged upload from the page cache");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutPayload};

    #[tokio::test]
    async fn the_staging_file_of_a_local_multipart_upload_is_found()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let url = url::Url::from_directory_path(dir.path()).map_err(|()| "not a directory")?;
        let bucket = LocalBucket::for_url(url.as_str()).ok_or("not a file:// bucket")?;
        assert!(LocalBucket::for_url("s3://bucket/prefix").is_none());
        let store = LocalFileSystem::new_with_prefix(dir.path())?;
        let key = Path::from("ab/topic/0/00000000000000000000-1.seg");
        let mut upload = store.put_multipart(&key).await?;
        let mut staged = bucket
            .staged(&key, 0)
            .ok_or("object_store no longer stages a multipart upload at <object path>#1")?;
        upload
            .put_part(PutPayload::from(vec![5u8; 3 << 20]))
            .await?;
        staged.handed_over(3 << 20);
        staged.handed_over(3 << 20);
        upload.complete().await?;
        bucket.drop_object(&key);
        let back = store.get(&key).await?.bytes().await?;
        assert_eq!(back.len(), 3 << 20);
        assert!(back.iter().all(|&b| b == 5));
        Ok(())
    }
}
