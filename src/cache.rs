//! A bounded, TTL'd, single-flight cache of Vault answers.
//!
//! - Concurrent misses for one key make one request; the others wait for it.
//! - Values *and* definite errors (403, 404) are kept for the TTL, so a shell
//!   probing for `.git` does not hit Vault on every prompt.
//! - Transient failures are never cached. When one happens and an older
//!   answer (a value, or a 403/404) is still within `stale_if_error` of its
//!   expiry, that answer is served again (and retried at most every
//!   `retry_stale`).
//! - Entries are evicted least-recently-used when either the entry count or
//!   the byte budget is exceeded. Values wipe themselves on drop (see
//!   `secret.rs`), so eviction is also erasure.

use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use lru::LruCache;
use tokio::sync::watch;

use crate::error::VaultError;

/// Approximate bytes of memory a cached value, or key, holds beyond its
/// own size: what its strings and vectors point to.
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for () {
    fn weight(&self) -> usize {
        0
    }
}

impl Weigh for Vec<String> {
    fn weight(&self) -> usize {
        self.iter().map(|s| s.len() + 24).sum::<usize>() + 24
    }
}

/// What Vault said to one question: a value, or an error. The cache keeps
/// values and definite errors (403, 404); a transient error is passed on.
pub type Answer<V> = Result<Arc<V>, VaultError>;

/// An answer from the cache, and until when the cache serves it without
/// asking Vault: whoever hands it on (the kernel's entry cache) keeps it no
/// longer. An answer the cache did not keep (a transient error, or one
/// evicted as it was stored) is good until the instant it was given.
#[derive(Debug)]
pub struct Cached<V> {
    pub answer: Answer<V>,
    pub until: Instant,
}

#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub stale_if_error: Duration,
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl CachePolicy {
    /// How often a stale value is retried while Vault is failing.
    fn retry_stale(&self) -> Duration {
        self.ttl
            .clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

struct Ready<V> {
    answer: Answer<V>,
    /// When the data was fetched from Vault.
    fetched: Instant,
    /// Until when it is served without asking Vault.
    expires: Instant,
    weight: usize,
}

impl<V> Ready<V> {
    fn cached(&self) -> Cached<V> {
        Cached {
            answer: self.answer.clone(),
            until: self.expires,
        }
    }
}

enum Slot<V> {
    Ready(Ready<V>),
    /// A fetch is under way; waiters watch for the sender to go away. The
    /// expired answer stays here (and in the byte count) until the fetch is
    /// stored, so a fetch that is cancelled (the fs layer's deadline) does
    /// not lose the value stale-if-error would serve.
    Pending(watch::Receiver<()>, Option<Ready<V>>),
}

struct Inner<K: Hash + Eq, V> {
    lru: LruCache<K, Slot<V>>,
    bytes: usize,
}

pub struct Cache<K: Hash + Eq, V> {
    inner: Mutex<Inner<K, V>>,
    policy: CachePolicy,
}

/// What [`Cache::get`] decided under the lock.
enum Step<V> {
    Hit(Cached<V>),
    Wait(watch::Receiver<()>),
    Fetch(watch::Sender<()>),
}

impl<K: Hash + Eq + Clone + Weigh, V: Weigh> Cache<K, V> {
    pub fn new(policy: CachePolicy) -> Self {
        Cache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            policy,
        }
    }

    /// The cached answer, or the result of `fetch` (run once for all
    /// concurrent callers), with its expiry.
    pub async fn get<F, Fut>(&self, key: &K, fetch: F) -> Cached<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, VaultError>>,
    {
        let mut fetch = Some(fetch);
        loop {
            match self.step(key) {
                Step::Hit(a) => return a,
                Step::Wait(mut rx) => {
                    // Err means the fetcher finished (or was cancelled): look again.
                    let _ = rx.changed().await;
                }
                Step::Fetch(tx) => {
                    let f = fetch.take().expect("fetch runs once per call");
                    let result = f().await;
                    let answer = self.store(key, result);
                    drop(tx);
                    return answer;
                }
            }
        }
    }

    /// The answer, with its expiry, if one is cached and fresh, without
    /// fetching.
    pub fn peek(&self, key: &K) -> Option<Cached<V>> {
        let mut inner = self.inner.lock().expect("cache lock");
        match inner.lru.get(key) {
            Some(Slot::Ready(r)) if Instant::now() < r.expires => Some(r.cached()),
            _ => None,
        }
    }

    /// Whether a fresh answer is cached or a fetch is under way: a caller
    /// would not have to start one.
    pub fn in_hand(&self, key: &K) -> bool {
        let inner = self.inner.lock().expect("cache lock");
        match inner.lru.peek(key) {
            Some(Slot::Ready(r)) => Instant::now() < r.expires,
            Some(Slot::Pending(rx, _)) => rx.has_changed().is_ok(),
            None => false,
        }
    }

    fn step(&self, key: &K) -> Step<V> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("cache lock");
        match inner.lru.get(key) {
            Some(Slot::Ready(r)) if now < r.expires => return Step::Hit(r.cached()),
            Some(Slot::Pending(rx, _)) if rx.has_changed().is_ok() => {
                return Step::Wait(rx.clone())
            }
            _ => {}
        }
        // Expired, absent, or a fetch whose caller went away: fetch anew,
        // keeping what was there.
        let old = match inner.lru.pop(key) {
            Some(Slot::Ready(r) | Slot::Pending(_, Some(r))) => Some(r),
            _ => None,
        };
        let (tx, rx) = watch::channel(());
        inner.lru.put(key.clone(), Slot::Pending(rx, old));
        Step::Fetch(tx)
    }

    fn store(&self, key: &K, result: Result<V, VaultError>) -> Cached<V> {
        let now = Instant::now();
        let p = &self.policy;
        // Built before taking the lock: weighing a value walks it.
        let fresh = match result {
            Ok(v) => Ok(Self::ready(key, v, now, now + p.ttl)),
            Err(e) if e.is_definite() => Ok(Ready {
                answer: Err(e),
                fetched: now,
                expires: now + p.ttl,
                weight: Self::key_weight(key),
            }),
            Err(e) => Err(e),
        };
        // One critical section from taking the pending slot out to putting
        // the answer in: a caller arriving in between would find the key
        // absent and fetch it a second time.
        let mut inner = self.inner.lock().expect("cache lock");
        let old = match inner.lru.pop(key) {
            Some(Slot::Pending(_, Some(r))) => {
                inner.bytes -= r.weight;
                Some(r)
            }
            _ => None,
        };
        let ready = match fresh {
            Ok(ready) => ready,
            Err(e) => {
                // A kept "not found" is served stale like a value: a lookup
                // that probes for a folder must not turn into EIO.
                let stale = old.filter(|o| now < o.fetched + p.ttl + p.stale_if_error);
                let Some(mut o) = stale else {
                    return Cached {
                        answer: Err(e),
                        until: now,
                    };
                };
                tracing::warn!(
                    error = %e,
                    age_s = now.duration_since(o.fetched).as_secs(),
                    "Vault unavailable: serving a cached answer past its TTL"
                );
                o.expires = now + p.retry_stale();
                o
            }
        };
        let mut cached = ready.cached();
        inner.bytes += ready.weight;
        inner.lru.put(key.clone(), Slot::Ready(ready));
        self.evict(&mut inner);
        if !inner.lru.contains(key) {
            cached.until = now;
        }
        cached
    }

    /// What a slot costs besides its value: the key, with the strings it
    /// holds (a path can be far longer than the answer stored under it),
    /// and the slot itself.
    fn key_weight(key: &K) -> usize {
        key.weight() + std::mem::size_of::<K>() + 64
    }

    fn ready(key: &K, v: V, fetched: Instant, expires: Instant) -> Ready<V> {
        let weight = v.weight() + Self::key_weight(key);
        Ready {
            answer: Ok(Arc::new(v)),
            fetched,
            expires,
            weight,
        }
    }

    /// Keep `v`, learnt from another answer that is served until `expires`
    /// (and expires here then too), unless a fresh answer is held or a fetch
    /// is under way: those are as new or newer.
    pub fn offer(&self, key: &K, v: V, expires: Instant) {
        let now = Instant::now();
        if now >= expires {
            return;
        }
        let fetched = expires.checked_sub(self.policy.ttl).unwrap_or(now);
        let ready = Self::ready(key, v, fetched, expires);
        let mut inner = self.inner.lock().expect("cache lock");
        match inner.lru.peek(key) {
            Some(Slot::Pending(..)) => return,
            Some(Slot::Ready(r)) if now < r.expires => return,
            _ => {}
        }
        if let Some(Slot::Ready(old)) = inner.lru.pop(key) {
            inner.bytes -= old.weight;
        }
        inner.bytes += ready.weight;
        inner.lru.put(key.clone(), Slot::Ready(ready));
        self.evict(&mut inner);
    }

    /// Drop every answer `gone` picks, the stale one a fetch under way
    /// keeps included: it is asked for again on next use. A fetch under way
    /// is left to finish.
    pub fn forget(&self, gone: impl Fn(&Answer<V>) -> bool) {
        let mut inner = self.inner.lock().expect("cache lock");
        let Inner { lru, bytes } = &mut *inner;
        let picked: Vec<K> = lru
            .iter()
            .filter_map(|(k, s)| match s {
                Slot::Ready(r) if gone(&r.answer) => Some(k.clone()),
                _ => None,
            })
            .collect();
        for k in picked {
            if let Some(Slot::Ready(r)) = lru.pop(&k) {
                *bytes -= r.weight;
            }
        }
        for (_, s) in lru.iter_mut() {
            if let Slot::Pending(_, old) = s {
                if old.as_ref().is_some_and(|r| gone(&r.answer)) {
                    *bytes -= old.take().map_or(0, |r| r.weight);
                }
            }
        }
    }

    fn evict(&self, inner: &mut Inner<K, V>) {
        while inner.lru.len() > 1
            && (inner.lru.len() > self.policy.max_entries || inner.bytes > self.policy.max_bytes)
        {
            match inner.lru.pop_lru() {
                Some((_, Slot::Ready(r))) => inner.bytes -= r.weight,
                // A fetch whose caller went away (the fs layer's deadline):
                // nobody will finish it, and nobody waits on it.
                Some((_, Slot::Pending(rx, old))) if rx.has_changed().is_err() => {
                    if let Some(r) = old {
                        inner.bytes -= r.weight;
                    }
                }
                Some((k, pending @ Slot::Pending(..))) => {
                    // Never drop an in-flight fetch; put it back as most recent.
                    inner.lru.put(k, pending);
                    if inner
                        .lru
                        .iter()
                        .all(|(_, s)| matches!(s, Slot::Pending(..)))
                    {
                        break;
                    }
                }
                None => break,
            }
        }
    }

    /// The sum of `f` over the values held (for tests).
    #[cfg(test)]
    pub fn weigh_all(&self, f: impl Fn(&K, &V) -> usize) -> usize {
        let inner = self.inner.lock().expect("cache lock");
        inner
            .lru
            .iter()
            .map(|(k, s)| match s {
                Slot::Ready(Ready { answer: Ok(v), .. }) => f(k, v),
                _ => 0,
            })
            .sum()
    }

    /// Entries and bytes held.
    #[cfg(test)]
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock().expect("cache lock");
        (inner.lru.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    impl Weigh for u32 {
        fn weight(&self) -> usize {
            0
        }
    }

    #[derive(Debug)]
    struct Val(usize);
    impl Weigh for Val {
        fn weight(&self) -> usize {
            self.0
        }
    }

    fn policy(ttl_ms: u64) -> CachePolicy {
        CachePolicy {
            ttl: Duration::from_millis(ttl_ms),
            stale_if_error: Duration::from_secs(3600),
            max_entries: 100,
            max_bytes: 1 << 20,
        }
    }

    /// `forget` drops exactly what it picks, and frees its bytes.
    #[tokio::test]
    async fn forget_drops_the_picked_answers_only() {
        let cache = Cache::<u32, Val>::new(policy(60_000));
        let calls = AtomicUsize::new(0);
        let fetch = |k: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                match k {
                    1 => Ok(Val(100)),
                    2 => Err(VaultError::Forbidden),
                    _ => Err(VaultError::NotFound),
                }
            }
        };
        for k in [1, 2, 3] {
            let _ = cache.get(&k, || fetch(k)).await;
        }
        let (_, bytes) = cache.usage();
        cache.forget(|a| matches!(a, Err(VaultError::Forbidden)));
        assert_eq!(cache.usage().0, 2);
        assert!(cache.usage().1 < bytes);
        for k in [1, 2, 3] {
            let _ = cache.get(&k, || fetch(k)).await;
        }
        // Only the refused one was asked again.
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        cache.forget(|_| true);
        assert_eq!(cache.usage(), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_fetch_once() {
        let cache = Arc::new(Cache::<u32, Val>::new(policy(60_000)));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(&7, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Val(1))
                    })
                    .await
                    .answer
                    .unwrap()
                    .0
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// A caller arriving while the fetcher stores its answer must find
    /// either the pending fetch or the answer, never an empty slot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_second_fetch_while_the_answer_is_stored() {
        let keys = 20_000u32;
        let cache = Arc::new(Cache::<u32, Val>::new(CachePolicy {
            max_entries: 2 * keys as usize,
            ..policy(60_000)
        }));
        let calls: Arc<Vec<AtomicUsize>> =
            Arc::new((0..keys).map(|_| AtomicUsize::new(0)).collect());
        let mut tasks = Vec::new();
        for k in 0..keys {
            for _ in 0..6 {
                let (cache, calls) = (cache.clone(), calls.clone());
                tasks.push(tokio::spawn(async move {
                    cache
                        .get(&k, || async {
                            calls[k as usize].fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            Ok(Val(1))
                        })
                        .await
                        .answer
                        .unwrap();
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let doubled = calls
            .iter()
            .filter(|c| c.load(Ordering::SeqCst) != 1)
            .count();
        assert_eq!(doubled, 0, "keys fetched more than once");
    }

    #[tokio::test]
    async fn ttl_expiry_refetches_and_definite_errors_are_cached() {
        let cache = Cache::<u32, Val>::new(policy(50));
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<Val, _>(VaultError::NotFound)
        };
        assert!(cache.get(&1, fetch).await.answer.is_err());
        assert!(cache.get(&1, fetch).await.answer.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(cache.get(&1, fetch).await.answer.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn stale_if_error_serves_old_value_on_transient_only() {
        let cache = Cache::<u32, Val>::new(policy(20));
        cache.get(&1, || async { Ok(Val(5)) }).await.answer.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let v = cache
            .get(&1, || async { Err(VaultError::Sealed) })
            .await
            .answer
            .unwrap();
        assert_eq!(v.0, 5);
        tokio::time::sleep(Duration::from_millis(120)).await;
        // A definite answer replaces the stale value.
        let e = cache
            .get(&1, || async { Err(VaultError::Forbidden) })
            .await
            .answer;
        assert_eq!(e.unwrap_err(), VaultError::Forbidden);
        // Transient errors are not cached.
        let e = cache
            .get(&2, || async { Err(VaultError::Sealed) })
            .await
            .answer;
        assert_eq!(e.unwrap_err(), VaultError::Sealed);
        assert!(cache.get(&2, || async { Ok(Val(1)) }).await.answer.is_ok());
    }

    #[tokio::test]
    async fn stale_if_error_also_keeps_definite_answers() {
        let cache = Cache::<u32, Val>::new(policy(20));
        let gone = || async { Err::<Val, _>(VaultError::NotFound) };
        assert!(cache.get(&1, gone).await.answer.is_err());
        tokio::time::sleep(Duration::from_millis(40)).await;
        let e = cache
            .get(&1, || async { Err(VaultError::Sealed) })
            .await
            .answer;
        assert_eq!(e.unwrap_err(), VaultError::NotFound);
    }

    #[tokio::test]
    async fn cancelled_refresh_keeps_stale_value() {
        let cache = Cache::<u32, Val>::new(policy(20));
        cache.get(&1, || async { Ok(Val(5)) }).await.answer.unwrap();
        let bytes = cache.usage().1;
        tokio::time::sleep(Duration::from_millis(40)).await;
        // A refresh that hangs and is abandoned (the fs layer's deadline).
        let hung = cache.get(&1, std::future::pending::<Result<Val, VaultError>>);
        assert!(tokio::time::timeout(Duration::from_millis(20), hung)
            .await
            .is_err());
        assert_eq!(cache.usage(), (1, bytes));
        let v = cache
            .get(&1, || async { Err(VaultError::Sealed) })
            .await
            .answer
            .unwrap();
        assert_eq!(v.0, 5);
        assert_eq!(cache.usage(), (1, bytes));
    }

    /// A fetch abandoned by its caller (the fs layer's deadline cuts an
    /// operation that chains requests) leaves its slot pending with nobody
    /// to finish it. Such slots must be evicted even though in flight:
    /// kept, one per abandoned key, they would grow past the entry bound
    /// and push every answer out, so nothing would stay cached.
    #[tokio::test]
    async fn abandoned_fetches_are_evicted() {
        let mut p = policy(60_000);
        p.max_entries = 10;
        let cache = Cache::<u32, Val>::new(p);
        cache
            .get(&1000, || async { Ok(Val(1)) })
            .await
            .answer
            .unwrap();
        for k in 0..100 {
            let hung = cache.get(&k, std::future::pending::<Result<Val, VaultError>>);
            assert!(tokio::time::timeout(Duration::from_millis(1), hung)
                .await
                .is_err());
        }
        cache
            .get(&1001, || async { Ok(Val(1)) })
            .await
            .answer
            .unwrap();
        assert!(cache.usage().0 <= 10, "{:?}", cache.usage());
        assert!(cache.peek(&1001).is_some(), "the newest answer was evicted");
    }

    #[tokio::test]
    async fn an_answer_comes_with_when_it_expires() {
        let cache = Cache::<u32, Val>::new(policy(200));
        assert!(cache.peek(&1).is_none());
        let before = Instant::now();
        let got = cache.get(&1, || async { Ok(Val(1)) }).await;
        assert_eq!(got.answer.unwrap().0, 1);
        assert!(got.until >= before + Duration::from_millis(200));
        assert!(got.until <= Instant::now() + Duration::from_millis(200));
        let hit = cache.get(&1, || async { Ok(Val(2)) }).await;
        assert_eq!((hit.answer.unwrap().0, hit.until), (1, got.until));
        let peeked = cache.peek(&1).unwrap();
        assert_eq!((peeked.answer.unwrap().0, peeked.until), (1, got.until));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(cache.peek(&1).is_none(), "expired answers are not peeked");
        // Not kept: good until it was given.
        let e = cache.get(&2, || async { Err(VaultError::Sealed) }).await;
        assert!(e.until <= Instant::now());
        assert_eq!(e.answer.unwrap_err(), VaultError::Sealed);
    }

    /// An answer too big to keep beside a fetch under way is evicted as it
    /// is stored: it is given as good until then, not for the TTL.
    #[tokio::test]
    async fn an_answer_evicted_as_it_is_stored_expires_at_once() {
        let mut p = policy(60_000);
        p.max_bytes = 10_000;
        let cache = Arc::new(Cache::<u32, Val>::new(p));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = cache.clone();
        let fetching = tokio::spawn(async move {
            let fetch = || async move {
                let _ = rx.await;
                Ok(Val(1))
            };
            waiting.get(&1, fetch).await.until
        });
        while !cache.in_hand(&1) {
            tokio::task::yield_now().await;
        }
        let got = cache.get(&2, || async { Ok(Val(20_000)) }).await;
        assert_eq!(got.answer.unwrap().0, 20_000);
        assert!(cache.peek(&2).is_none(), "kept");
        assert!(got.until <= Instant::now());
        tx.send(()).unwrap();
        assert!(fetching.await.unwrap() > Instant::now(), "a kept answer");
    }

    #[tokio::test]
    async fn stale_disabled_with_zero() {
        let mut p = policy(10);
        p.stale_if_error = Duration::ZERO;
        let cache = Cache::<u32, Val>::new(p);
        cache.get(&1, || async { Ok(Val(5)) }).await.answer.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(cache
            .get(&1, || async { Err(VaultError::Sealed) })
            .await
            .answer
            .is_err());
    }

    #[tokio::test]
    async fn evicts_by_bytes_and_count() {
        let mut p = policy(60_000);
        p.max_bytes = 10_000;
        p.max_entries = 5;
        let cache = Cache::<u32, Val>::new(p);
        for i in 0..10 {
            cache
                .get(&i, || async { Ok(Val(10)) })
                .await
                .answer
                .unwrap();
        }
        assert_eq!(cache.usage().0, 5);
        let big = Cache::<u32, Val>::new(CachePolicy {
            max_entries: 100,
            ..p
        });
        for i in 0..10 {
            big.get(&i, || async { Ok(Val(3000)) })
                .await
                .answer
                .unwrap();
        }
        let (n, bytes) = big.usage();
        assert!(bytes <= 10_000, "{bytes}");
        assert!(n < 4, "{n}");
        // The most recent survives.
        assert!(big.peek(&9).is_some());
        assert!(big.peek(&0).is_none());
    }
}
