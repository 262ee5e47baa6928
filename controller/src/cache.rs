//! Cache for device lists and summaries, in process (default) or in Redis
//! (then shared by every controller on the database). An optimisation that
//! may vanish at any moment without changing any answer:
//!
//! - The store keeps a data version that moves on in every transaction
//!   changing devices or alerts ([`crate::store::DataVersion`]). A read
//!   asks the store for it first (one short query) and uses an entry only
//!   if it was loaded at that version: a read that starts after a commit —
//!   made by any controller — never gets an answer from before it.
//! - One key per kind and database: `ward:v1:{cluster}:{kind}`, holding the
//!   version it was loaded at and the answer. An entry of another version
//!   is replaced, so the cache holds one answer per kind, whatever the
//!   write rate; entries also expire by TTL.
//! - An answer loaded after reading version V is at least as new as V (the
//!   store had committed V), so storing it under V never shows an older
//!   state.
//! - Redis errors and timeouts are counted, mark the cache degraded, and
//!   the answer comes from the store instead. Because the version lives in
//!   the store, nothing stale can surface when Redis returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;

use crate::store::DataVersion;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

/// Bumped whenever cached shapes change: old entries are never read.
pub const SCHEMA_VERSION: u32 = 3;
/// An entry nobody reads any more expires after this.
const TTL: Duration = Duration::from_secs(60);
/// A Redis call slower than this counts as an error.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// Cache counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheMetrics {
    /// Answers served from the cache.
    pub hits: AtomicU64,
    /// Answers loaded from the store (and stored in the cache).
    pub misses: AtomicU64,
    /// Entries found loaded at an older data version (a commit since),
    /// replaced.
    pub invalidations: AtomicU64,
    /// Cache backend errors and timeouts.
    pub errors: AtomicU64,
}

impl CacheMetrics {
    /// Every counter with its Prometheus name and help, as `/metrics`
    /// exports it.
    pub fn exported(&self) -> [(&'static str, &'static str, &AtomicU64); 4] {
        [
            (
                "ward_cache_hits_total",
                "Answers served from the cache.",
                &self.hits,
            ),
            (
                "ward_cache_misses_total",
                "Answers loaded from the store into the cache.",
                &self.misses,
            ),
            (
                "ward_cache_invalidations_total",
                "Cached answers found older than the store's data version (a commit since), replaced.",
                &self.invalidations,
            ),
            (
                "ward_cache_errors_total",
                "Cache backend errors and timeouts.",
                &self.errors,
            ),
        ]
    }
}

enum Backend {
    #[allow(
        clippy::disallowed_types,
        reason = "in-process cache map, not the probe path"
    )]
    InProcess(std::sync::Mutex<HashMap<String, (Instant, Vec<u8>)>>),
    Redis(redis::aio::ConnectionManager),
}

/// The cache.
pub struct Cache {
    backend: Backend,
    /// A random id of this process, for the `/readyz` probe key.
    instance: String,
    /// The last Redis call failed; cleared by the next success.
    degraded: AtomicBool,
    metrics: CacheMetrics,
}

/// Why the Redis cache could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("Redis cache at {url}: {source}")]
pub struct CacheError {
    url: String,
    source: redis::RedisError,
}

impl Cache {
    /// An in-process cache.
    pub fn in_process() -> Self {
        #[allow(clippy::disallowed_types, reason = "see Backend::InProcess")]
        let map = std::sync::Mutex::new(HashMap::new());
        Self::with_backend(Backend::InProcess(map))
    }

    /// A Redis cache. Redis must answer now; later outages are survived:
    /// the connection is re-established in the background and, meanwhile,
    /// answers come from the store.
    pub async fn redis(url: &str) -> Result<Self, CacheError> {
        let error = |source| CacheError {
            url: ward_settings::redact_secrets(url),
            source,
        };
        let client = redis::Client::open(url).map_err(error)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1);
        let manager = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(error)?;
        Ok(Self::with_backend(Backend::Redis(manager)))
    }

    fn with_backend(backend: Backend) -> Self {
        Self {
            backend,
            instance: format!("{:016x}", rand_u64()),
            degraded: AtomicBool::new(false),
            metrics: CacheMetrics::default(),
        }
    }

    /// Counters.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }

    /// True while the last cache backend call failed.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// `redis` or `in-process`, for `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::InProcess(_) => "in-process",
            Backend::Redis(_) => "redis",
        }
    }

    /// The value of `kind` at `version` (the store's, read just now) from
    /// the cache, or `load()`'s, which is then cached under `version`.
    pub async fn get_or_load<T, E, F>(
        &self,
        kind: &str,
        version: &DataVersion,
        load: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, E>>,
    {
        let key = format!("ward:v{SCHEMA_VERSION}:{}:{kind}", version.cluster);
        let stamp = version.version.to_be_bytes();
        if let Some(bytes) = self.fetch(&key).await {
            match bytes.split_at_checked(stamp.len()) {
                Some((at, answer)) if at == stamp => {
                    if let Ok(value) = serde_json::from_slice(answer) {
                        self.metrics.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(value);
                    }
                }
                _ => {
                    self.metrics.invalidations.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.metrics.misses.fetch_add(1, Ordering::Relaxed);
        let value = load.await?;
        let mut bytes = stamp.to_vec();
        if serde_json::to_writer(&mut bytes, &value).is_ok() {
            self.store(&key, bytes).await;
        }
        Ok(value)
    }

    /// Writes and reads back a probe key: the `/readyz` round trip.
    pub async fn round_trip(&self) -> Result<(), String> {
        let key = format!("ward:v{SCHEMA_VERSION}:{}:readyz", self.instance);
        let token = rand_u64().to_string().into_bytes();
        self.store(&key, token.clone()).await;
        match self.fetch(&key).await {
            Some(read) if read == token => Ok(()),
            Some(_) => Err("read back a different value".into()),
            None if self.is_degraded() => Err("unreachable".into()),
            None => Err("value not found after writing it".into()),
        }
    }

    async fn fetch(&self, key: &str) -> Option<Vec<u8>> {
        match &self.backend {
            Backend::InProcess(map) => {
                let map = map.lock().unwrap_or_else(|poison| poison.into_inner());
                map.get(key)
                    .filter(|(expires, _)| *expires > Instant::now())
                    .map(|(_, bytes)| bytes.clone())
            }
            Backend::Redis(manager) => {
                let mut connection = manager.clone();
                let result =
                    tokio::time::timeout(REDIS_TIMEOUT, connection.get::<_, Option<Vec<u8>>>(key))
                        .await;
                self.redis_outcome(result).flatten()
            }
        }
    }

    async fn store(&self, key: &str, bytes: Vec<u8>) {
        match &self.backend {
            Backend::InProcess(map) => {
                let mut map = map.lock().unwrap_or_else(|poison| poison.into_inner());
                map.insert(key.to_owned(), (Instant::now() + TTL, bytes));
            }
            Backend::Redis(manager) => {
                let mut connection = manager.clone();
                let write = connection.set_ex::<_, _, ()>(key, bytes, TTL.as_secs());
                let result = tokio::time::timeout(REDIS_TIMEOUT, write).await;
                self.redis_outcome(result);
            }
        }
    }

    /// Counts and logs a failed Redis call; returns the value of a good one.
    fn redis_outcome<T>(
        &self,
        result: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        let failure = match result {
            Ok(Ok(value)) => {
                self.degraded.store(false, Ordering::Relaxed);
                return Some(value);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {REDIS_TIMEOUT:?}"),
        };
        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            warn!(error = %failure, "Redis cache failing; answering from the store");
        }
        None
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return u64::from(std::process::id()) ^ 0x5741_5244;
    }
    u64::from_ne_bytes(bytes)
}
