//! Opening the object store named by a URL, and wrapping it so every request is counted (and, in
//! tests, can be made to fail). `object_store` is the only path to object storage.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RetryConfig, UploadPart,
};

/// S3 settings beyond the URL; credentials come from the standard `AWS_*` variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint of an S3-compatible service, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region; `AWS_REGION` or `us-east-1` when unset.
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted style.
    pub path_style: bool,
}

/// Why a store URL could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    /// The URL does not parse or names no bucket.
    #[error("invalid object store URL '{url}': {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The backend refused the configuration.
    #[error("cannot open object store '{url}': {source}")]
    Backend {
        /// The URL.
        url: String,
        /// The backend's error.
        source: Box<object_store::Error>,
    },
}

/// Opens the store for `url` (`s3://bucket/prefix`, `gs://…`, `az://container/prefix`,
/// `file:///path`) and returns it with the key prefix inside it.
pub fn open_store(
    url: &str,
    s3: &S3Options,
) -> Result<(Arc<dyn ObjectStore>, String), StoreUrlError> {
    let invalid = |reason: String| StoreUrlError::Invalid {
        url: url.to_string(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    let backend = |source| StoreUrlError::Backend {
        url: url.to_string(),
        source: Box::new(source),
    };
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 5,
        retry_timeout: Duration::from_secs(30),
    };
    if parsed.scheme() == "file" {
        let path = parsed
            .to_file_path()
            .map_err(|()| invalid("not a local path".into()))?;
        std::fs::create_dir_all(&path)
            .map_err(|e| invalid(format!("cannot create {}: {e}", path.display())))?;
        // A PUT must be durable when it returns, as it is on S3: the offload protocol publishes
        // a manifest only after its segment object is written, and deletes the local copy after.
        let store = LocalFileSystem::new_with_prefix(&path)
            .map_err(backend)?
            .with_fsync(true);
        return Ok((Arc::new(store), String::new()));
    }
    let bucket = parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| invalid("no bucket".into()))?;
    let prefix = parsed.path().trim_matches('/').to_string();
    let store: Arc<dyn ObjectStore> = match parsed.scheme() {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_virtual_hosted_style_request(!s3.path_style)
                .with_retry(retry);
            if let Some(endpoint) = &s3.endpoint {
                b = b
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(region) = &s3.region {
                b = b.with_region(region);
            }
            Arc::new(b.build().map_err(backend)?)
        }
        "gs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .build()
                .map_err(backend)?,
        ),
        "az" | "abfs" => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_retry(retry)
                .build()
                .map_err(backend)?,
        ),
        other => return Err(invalid(format!("unsupported scheme '{other}'"))),
    };
    Ok((store, prefix))
}

/// Observes every request of a [`HookedStore`]: counts it, and may refuse it (fault injection).
pub trait StoreHooks: Send + Sync + fmt::Debug + 'static {
    /// Called before a request; an error fails the request without reaching the store.
    fn before(&self, operation: &'static str) -> object_store::Result<()>;
    /// Called when a request finished.
    fn after(&self, operation: &'static str, ok: bool);
}

impl StoreHooks for super::metrics::TieringMetrics {
    fn before(&self, _operation: &'static str) -> object_store::Result<()> {
        Ok(())
    }

    fn after(&self, operation: &'static str, ok: bool) {
        self.record_request(operation, ok);
    }
}

/// An object store wrapped with [`StoreHooks`].
#[derive(Debug)]
pub struct HookedStore<H> {
    inner: Arc<dyn ObjectStore>,
    hooks: Arc<H>,
}

impl<H: StoreHooks> HookedStore<H> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, hooks: Arc<H>) -> Self {
        HookedStore { inner, hooks }
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        self.hooks.before(operation)?;
        let result = request.await;
        self.hooks.after(operation, result.is_ok());
        result
    }
}

impl<H> fmt::Display for HookedStore<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked({})", self.inner)
    }
}

#[async_trait]
impl<H: StoreHooks> ObjectStore for HookedStore<H> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.observe("PUT", self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self
            .observe("PUT", self.inner.put_multipart_opts(location, opts))
            .await?;
        Ok(Box::new(HookedUpload {
            inner: upload,
            hooks: Arc::clone(&self.hooks),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let operation = if options.head { "HEAD" } else { "GET" };
        self.observe(operation, self.inner.get_opts(location, options))
            .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.observe("GET", self.inner.get_ranges(location, ranges))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let hooks = Arc::clone(&self.hooks);
        let refused = Arc::clone(&self.hooks);
        let locations = locations
            .map(move |l| {
                refused.before("DELETE")?;
                l
            })
            .boxed();
        self.inner
            .delete_stream(locations)
            .inspect(move |r| hooks.after("DELETE", r.is_ok()))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if let Err(e) = self.hooks.before("LIST") {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.hooks.after("LIST", true);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.observe("LIST", self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.observe("COPY", self.inner.copy_opts(from, to, options))
            .await
    }
}

/// A multipart upload whose part uploads are observed as PUTs.
#[derive(Debug)]
struct HookedUpload<H> {
    inner: Box<dyn MultipartUpload>,
    hooks: Arc<H>,
}

#[async_trait]
impl<H: StoreHooks> MultipartUpload for HookedUpload<H> {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let hooks = Arc::clone(&self.hooks);
        if let Err(e) = hooks.before("PUT") {
            return Box::pin(async move { Err(e) });
        }
        let part = self.inner.put_part(data);
        Box::pin(async move {
            let result = part.await;
            hooks.after("PUT", result.is_ok());
            result
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.hooks.before("PUT")?;
        let result = self.inner.complete().await;
        self.hooks.after("PUT", result.is_ok());
        result
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.hooks.before("DELETE")?;
        let result = self.inner.abort().await;
        self.hooks.after("DELETE", result.is_ok());
        result
    }
}

/// Hooks for tests: fail every request while switched on.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FailSwitch {
    /// While true, requests fail.
    pub(crate) failing: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl StoreHooks for FailSwitch {
    fn before(&self, operation: &'static str) -> object_store::Result<()> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "FailSwitch",
                source: format!("injected failure of {operation}").into(),
            });
        }
        Ok(())
    }

    fn after(&self, _operation: &'static str, _ok: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use crate::remote::metrics::TieringMetrics;

    #[tokio::test]
    async fn requests_are_counted_by_kind() {
        let metrics = Arc::new(TieringMetrics::default());
        let store = HookedStore::new(Arc::new(InMemory::new()), Arc::clone(&metrics));
        let key = Path::from("a/b");
        store
            .put(&key, PutPayload::from_static(b"hello"))
            .await
            .expect("put");
        assert_eq!(&store.get_range(&key, 1..3).await.expect("get")[..], b"el");
        assert!(store.get(&Path::from("missing")).await.is_err());
        store.delete(&key).await.expect("delete");
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"object_store_requests_total{operation="PUT"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"object_store_requests_total{operation="GET"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"object_store_errors_total{operation="GET"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"object_store_requests_total{operation="DELETE"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_switched_on_fault_fails_requests_until_switched_off() {
        let switch = Arc::new(FailSwitch::default());
        let store = HookedStore::new(Arc::new(InMemory::new()), Arc::clone(&switch));
        switch
            .failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            store
                .put(&Path::from("k"), PutPayload::from_static(b"x"))
                .await
                .is_err()
        );
        switch
            .failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        store
            .put(&Path::from("k"), PutPayload::from_static(b"x"))
            .await
            .expect("put");
    }

    #[test]
    fn urls_choose_the_backend() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().join("objects").display());
        let (_, prefix) = open_store(&url, &S3Options::default()).expect("local");
        assert_eq!(prefix, "");
        let s3 = S3Options {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: Some("us-east-1".into()),
            path_style: true,
        };
        let (_, prefix) = open_store("s3://bucket/some/prefix", &s3).expect("s3");
        assert_eq!(prefix, "some/prefix");
        assert!(open_store("ftp://x/y", &s3).is_err());
        assert!(open_store("s3:///nobucket", &s3).is_err());
    }
}
