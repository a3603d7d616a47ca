use super::*;
use object_store::PutPayload;
use object_store::memory::InMemory;

async fn test_cache(dir: &std::path::Path, store: Arc<dyn ObjectStore>, chunk: u64) -> ChunkCache {
    let settings = CacheSettings {
        memory_bytes: 1 << 20,
        disk_bytes: 32 << 20,
        disk_dir: dir.to_path_buf(),
        chunk_bytes: chunk,
    };
    ChunkCache::open(&settings, store, TieringMetrics::default())
        .await
        .expect("cache")
}

#[tokio::test]
async fn ranges_spanning_chunks_read_back_exactly_and_hit_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    store
        .put(&Path::from("obj"), PutPayload::from(data.clone()))
        .await
        .expect("put");
    let cache = test_cache(dir.path(), store, 4096).await;
    for range in [
        0..10,
        4090..4200,
        4096..8192,
        100..30_000,
        49_999..50_000,
        7..7,
    ] {
        let got = cache
            .read("obj", 50_000, range.clone(), 1)
            .await
            .expect("read");
        assert_eq!(
            &got[..],
            &data[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }
    let misses = cache.metrics.cache_misses.get();
    cache
        .read("obj", 50_000, 100..30_000, 1)
        .await
        .expect("again");
    assert_eq!(
        cache.metrics.cache_misses.get(),
        misses,
        "a second read is served from the cache"
    );
    assert!(cache.metrics.cache_hits.get() > 0);
    assert!(cache.read("obj", 50_000, 0..50_001, 1).await.is_err());
    assert!(cache.read("missing", 10, 0..5, 1).await.is_err());
}

/// A cache of 4 KiB chunks over a 40,000-byte object "obj", with request counters.
async fn counted_cache(dir: &std::path::Path) -> (ChunkCache, Vec<u8>, TieringMetrics) {
    let metrics = TieringMetrics::default();
    let store: Arc<dyn ObjectStore> = Arc::new(super::super::store::HookedStore::new(
        Arc::new(InMemory::new()),
        Arc::new(metrics.clone()),
    ));
    let data: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
    store
        .put(&Path::from("obj"), PutPayload::from(data.clone()))
        .await
        .expect("put");
    (test_cache(dir, store, 4096).await, data, metrics)
}

fn get_count(metrics: &TieringMetrics) -> u64 {
    metrics
        .object_store_requests
        .get_or_create(&super::super::metrics::OperationLabels {
            operation: "GET".into(),
        })
        .get()
}

#[tokio::test]
async fn a_miss_fetches_a_span_of_chunks_in_one_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cache, data, metrics) = counted_cache(dir.path()).await;
    let gets = || get_count(&metrics);
    // Chunks 0..4 in one GET; reading them all back costs nothing more.
    let first = cache.read("obj", 40_000, 0..100, 4).await.expect("read");
    assert_eq!(&first[..], &data[..100]);
    assert_eq!((gets(), cache.metrics.cache_misses.get()), (1, 4));
    let four = cache.read("obj", 40_000, 0..16_384, 4).await.expect("read");
    assert_eq!(&four[..], &data[..16_384]);
    assert_eq!(gets(), 1, "the span was cached whole");
    // A span stops at the object's end (chunk 9 is the last, 3,136 bytes).
    let tail = cache
        .read("obj", 40_000, 32_768..40_000, 8)
        .await
        .expect("tail");
    assert_eq!(&tail[..], &data[32_768..]);
    assert_eq!(gets(), 2);
}

/// Claims what is free in `first..last` and streams it, as the reader's read-ahead does.
async fn stream(cache: &ChunkCache, key: &str, first: u64, last: u64, size: u64) -> Result<u64> {
    match cache.claim(key, first..last, last, size) {
        Some(claim) => cache.stream_claimed(claim).await,
        None => Ok(0),
    }
}

#[tokio::test]
async fn a_read_ahead_stream_caches_every_chunk_with_one_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cache, data, metrics) = counted_cache(dir.path()).await;
    let gets = || get_count(&metrics);
    cache.chunk("obj", 2, 40_000, 1).await.expect("chunk 2");
    // A run stops at a cached chunk: chunks 0 and 1, then (skipping the cached chunk 2)
    // 3 to the end, one GET each; then nothing is left to fetch.
    assert_eq!(
        stream(&cache, "obj", 0, 100, 40_000).await.expect("stream"),
        2
    );
    assert_eq!(
        stream(&cache, "obj", 0, 100, 40_000).await.expect("stream"),
        7
    );
    assert_eq!(
        stream(&cache, "obj", 0, 100, 40_000).await.expect("stream"),
        0
    );
    assert_eq!(gets(), 3);
    let all = cache.read("obj", 40_000, 0..40_000, 1).await.expect("read");
    assert_eq!(&all[..], &data[..]);
    assert_eq!(gets(), 3, "everything was cached by the streams");
    assert!(stream(&cache, "missing", 0, 4, 40_000).await.is_err());
}

/// A whole object is streamed without a range: an object longer than the manifest says is an
/// error, not data.
#[tokio::test]
async fn a_stream_of_an_object_longer_than_recorded_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cache, _, _) = counted_cache(dir.path()).await;
    let streamed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream(&cache, "obj", 0, 100, 30_000),
    )
    .await
    .expect("the stream ends");
    assert!(
        matches!(streamed, Err(LogError::CorruptRemote { .. })),
        "{streamed:?}"
    );
}

#[tokio::test]
async fn claimed_chunks_are_fetched_once_and_released_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cache, data, metrics) = counted_cache(dir.path()).await;
    let gets = || get_count(&metrics);
    // Chunks 0..4 claimed by one read-ahead: a later one claims only what follows.
    let first = cache.claim("obj", 0..4, 4, 40_000).expect("claim");
    let second = cache.claim("obj", 0..8, 8, 40_000).expect("claim the rest");
    assert_eq!((second.first, second.last), (4, 8));
    assert!(
        cache.claim("obj", 0..8, 8, 40_000).is_none(),
        "nothing left to claim"
    );
    // A released claim can be claimed again; a streamed one is cached, not claimable.
    cache.release(second).await;
    let second = cache.claim("obj", 2..8, 8, 40_000).expect("claim again");
    assert_eq!(cache.stream_claimed(first).await.expect("stream"), 4);
    assert_eq!(cache.stream_claimed(second).await.expect("stream"), 4);
    assert_eq!(gets(), 2);
    assert!(cache.claim("obj", 0..8, 8, 40_000).is_none());
    let head = cache.read("obj", 40_000, 0..32_768, 1).await.expect("read");
    assert_eq!(&head[..], &data[..32_768]);
    assert_eq!(gets(), 2, "read from what the claims streamed");
}

#[test]
fn memory_shards_and_the_disk_queue_follow_the_memory_tier() {
    assert_eq!(memory_shards(64 << 20, 4 << 20), 1);
    assert_eq!(memory_shards(1 << 30, 4 << 20), 4);
    assert_eq!(memory_shards(64 << 30, 4 << 20), 8);
    assert_eq!(memory_shards(0, 0), 1);
    // The disk tier's queue takes a read-ahead window (half the memory tier), at least 64 MiB.
    assert_eq!(disk_queue_bytes(512 << 20), 256 << 20);
    assert_eq!(disk_queue_bytes(64 << 20), 64 << 20);
}

async fn cached(cache: &ChunkCache, index: u64) -> bool {
    // Give a running stream the time to deliver what it may.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    cache.cache.contains(&chunk_key("obj", index))
}

#[tokio::test]
async fn a_read_ahead_delivers_as_far_as_its_reader_reaches_in_one_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cache, data, metrics) = counted_cache(dir.path()).await;
    let gets = || get_count(&metrics);
    let cache = Arc::new(cache);
    // The whole object claimed for a reader whose window is chunks 0..2.
    let claim = cache.claim("obj", 0..2, 10, 40_000).expect("claim");
    let stream = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move { cache.stream_claimed(claim).await }
    });
    assert!(cached(&cache, 1).await);
    assert!(!cached(&cache, 2).await, "held back until the reader moves");
    cache.allow("obj", 2..4);
    assert!(cached(&cache, 3).await);
    assert!(!cached(&cache, 4).await);
    // A reader needing chunk 5 (within its window of 2 past chunk 4) gets it from the stream.
    let five = cache
        .read("obj", 40_000, 20_480..24_576, 1)
        .await
        .expect("5");
    assert_eq!(&five[..], &data[20_480..24_576]);
    assert_eq!(gets(), 1, "all from the one GET");
    // A reader jumping to chunk 9 (past allowed 6 + window 2) ends the stream and fetches
    // chunk 9 itself.
    let nine = cache
        .read("obj", 40_000, 36_864..40_000, 1)
        .await
        .expect("9");
    assert_eq!(&nine[..], &data[36_864..]);
    let delivered = stream.await.expect("join").expect("stream");
    assert_eq!(delivered, 6, "chunks 0..6 delivered");
    assert_eq!(gets(), 2);
    // What the stream did not deliver is free to claim again.
    let rest = cache
        .claim("obj", 6..8, 10, 40_000)
        .expect("claim the rest");
    assert_eq!((rest.first, rest.last), (6, 9));
}

#[tokio::test]
async fn chunks_in_the_disk_tier_are_promoted_to_memory_without_a_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = TieringMetrics::default();
    let store: Arc<dyn ObjectStore> = Arc::new(super::super::store::HookedStore::new(
        Arc::new(InMemory::new()),
        Arc::new(metrics.clone()),
    ));
    let size = 2u64 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
    store
        .put(&Path::from("big"), PutPayload::from(data))
        .await
        .expect("put");
    // 512 chunks through a memory tier of 256: the first ones end up on disk only.
    let cache = test_cache(dir.path(), store, 4096).await;
    cache.read("big", size, 0..size, 16).await.expect("read");
    let key = chunk_key("big", 0);
    let on_disk_only =
        |cache: &ChunkCache| !cache.cache.memory().contains(&key) && cache.cache.contains(&key);
    for _ in 0..100 {
        if on_disk_only(&cache) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(on_disk_only(&cache), "chunk 0 was written to the disk tier");
    let gets = get_count(&metrics);
    cache.promote("big", 0..1);
    for _ in 0..100 {
        if cache.cache.memory().contains(&key) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(cache.cache.memory().contains(&key), "promoted to memory");
    assert_eq!(get_count(&metrics), gets, "from disk, not from the store");
}
