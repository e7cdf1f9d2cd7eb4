//! A loaded route plugin and calling it.
//!
//! Calls run on pre-instantiated instances taken from a [`Pool`]: an
//! instance is used by one call at a time, returned after a clean call and
//! discarded after a trap.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};
use tracing::Instrument;
use wasmtime::component::ComponentExportIndex;

use super::{
    authorized::AuthorizeCache,
    bindings::{RoutePluginPre, exports::ws_router::plugin::route as wit},
    engine::{CallError, Instance, PluginEngine, PluginState},
    output::PluginOutput,
    pool::{Pool, Pooled},
    schema::Schema,
};

/// How a route's updates reach a client that cannot keep up (the optional
/// WIT `delivery` interface; `QueueAll` when the plugin does not export it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryPolicy {
    /// Disconnect the slow client (close code 4008).
    QueueAll,
    /// Replace queued updates by newer ones of the same subscription.
    LatestValue,
}

impl std::fmt::Display for DeliveryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeliveryPolicy::QueueAll => "queue-all",
            DeliveryPolicy::LatestValue => "latest-value",
        })
    }
}

/// What the host keeps of a route's updates (the optional WIT `retention`
/// interface; [`Retention::NONE`] when the plugin does not export it).
/// Checked at load: a history has a size and a TTL, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Retention {
    /// Send a new subscription each key's last update.
    pub snapshot: bool,
    /// Updates kept per key for recovery; 0: no history, no offsets.
    pub history_size: u32,
    /// How long an update stays in the history (zero without one).
    #[serde(rename = "history_ttl_ms", serialize_with = "as_millis")]
    pub history_ttl: Duration,
}

impl Retention {
    /// No snapshot, no history: a plugin built against contract 0.1.0-0.1.2.
    pub const NONE: Retention = Retention {
        snapshot: false,
        history_size: 0,
        history_ttl: Duration::ZERO,
    };

    /// Whether updates get offsets and are kept for recovery.
    pub fn has_history(&self) -> bool {
        self.history_size > 0
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A route's identity, as its plugin reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub tags: Vec<String>,
}

/// What a subscription request resolved to (see the WIT `subscription`):
/// the topic the client knows it by, and the keys publications reach it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: Arc<str>,
    pub keys: Vec<Arc<str>>,
}

/// A loaded, validated route plugin.
pub struct Plugin {
    pub info: RouteInfo,
    /// The route name as shared by registry entries and frames.
    pub route: Arc<str>,
    pub request_schema: Schema,
    pub data_schema: Schema,
    /// Where it was loaded from, its SHA-256 and when.
    pub file: std::path::PathBuf,
    pub sha256: Arc<str>,
    pub loaded_at: SystemTime,
    /// What happens to slow clients of this route.
    pub delivery: DeliveryPolicy,
    /// Snapshots and history of its updates.
    pub retention: Retention,
    /// The optional `authorize` function, if the plugin exports it.
    pub(super) authorize: Option<ComponentExportIndex>,
    /// How its machine code was obtained.
    pub compile: CompileInfo,
    pub(super) pre: RoutePluginPre<PluginState>,
    pub(super) engine: PluginEngine,
    pub(super) pool: Pool,
    /// Where the plugin's stdout and stderr go.
    pub(super) output: Arc<PluginOutput>,
    /// Calls that trapped, timed out or returned invalid output.
    pub(super) failures: AtomicU64,
    /// Operations holding this version (see [`Lease`]).
    pub(super) leases: TaskTracker,
    /// `topics` answers of this version, by request text.
    pub(super) resolved: TopicsCache,
    /// `authorize` answers of this version, for a moment.
    pub(super) authorized: AuthorizeCache,
}

/// Whether a plugin's machine code came from the artifact cache, and how
/// long compiling or loading it took.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CompileInfo {
    pub cached: bool,
    pub ms: f64,
}

/// A plugin held for one operation (a subscribe, a publication). Replacing
/// or removing a route waits until the old version's leases are gone, so
/// that whatever an operation started on it finishes before the host moves
/// on (see [`Plugin::drained`]).
pub struct Lease {
    plugin: Arc<Plugin>,
    _token: TaskTrackerToken,
}

impl std::ops::Deref for Lease {
    type Target = Plugin;

    fn deref(&self) -> &Plugin {
        &self.plugin
    }
}

impl Lease {
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }
}

impl Plugin {
    /// Hold this version for one operation.
    pub fn lease(self: &Arc<Self>) -> Lease {
        Lease {
            plugin: Arc::clone(self),
            _token: self.leases.token(),
        }
    }

    /// Wait until every lease taken so far is returned, at most `timeout`;
    /// whether they all were.
    pub async fn drained(&self, timeout: Duration) -> bool {
        self.leases.close();
        tokio::time::timeout(timeout, self.leases.wait())
            .await
            .is_ok()
    }

    /// Whether `key` belongs to this route: `<route>:...`.
    pub fn owns_key(&self, key: &str) -> bool {
        key.strip_prefix(&*self.route)
            .is_some_and(|rest| rest.starts_with(':'))
    }

    /// Calls that failed since the plugin was loaded.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Resolve a (schema-valid) request to its topic and routing keys, and
    /// check the answer: a non-empty, bounded list of keys of this route.
    /// `topics` is a pure function of the request (the contract says so),
    /// so answers are kept per version (see [`TopicsCache`]): a request
    /// seen before costs a lookup, not a WebAssembly call.
    pub async fn topics(&self, request: &str) -> Result<Subscription, CallError> {
        self.resolve(request, None).await
    }

    /// [`Plugin::topics`] of a request the caller checked against this
    /// version's request schema and reduced to `canonical`: remembered
    /// with it, so that the same text sent again needs neither the check
    /// nor the call (see [`Plugin::validated`]).
    pub async fn topics_validated(
        &self,
        request: &str,
        canonical: &Arc<str>,
    ) -> Result<Subscription, CallError> {
        self.resolve(request, Some(canonical)).await
    }

    /// A request text this version's request schema accepted before: its
    /// canonical form and what it resolved to.
    pub fn validated(&self, request: &str) -> Option<(Arc<str>, Subscription)> {
        let hit = self.resolved.get(request)?;
        Some((hit.canonical?, hit.subscription))
    }

    async fn resolve(
        &self,
        request: &str,
        canonical: Option<&Arc<str>>,
    ) -> Result<Subscription, CallError> {
        if let Some(hit) = self.resolved.get(request) {
            if let (None, Some(canonical)) = (&hit.canonical, canonical) {
                let subscription = hit.subscription.clone();
                let canonical = Some(Arc::clone(canonical));
                self.resolved.insert(
                    request,
                    Resolved {
                        subscription,
                        canonical,
                    },
                );
            }
            return Ok(hit.subscription);
        }
        let answer = self.call_topics(request).await?;
        let answer = answer.map_err(|e| match e {
            wit::TopicError::InvalidRequest(m) => CallError::Rejected(m),
            wit::TopicError::Internal(m) => {
                tracing::warn!(route = %self.info.name, error = %m, "plugin reported an internal error");
                CallError::Rejected("the route could not handle this request".to_owned())
            }
        })?;
        let subscription = self
            .check_subscription(answer)
            .inspect_err(|e| self.record_failure(e))?;
        let resolved = Resolved {
            subscription: subscription.clone(),
            canonical: canonical.cloned(),
        };
        self.resolved.insert(request, resolved);
        Ok(subscription)
    }

    /// What `request` resolved to before, if it is still remembered.
    pub fn cached_topics(&self, request: &str) -> Option<Subscription> {
        self.resolved.get(request).map(|hit| hit.subscription)
    }

    fn check_subscription(&self, answer: wit::Subscription) -> Result<Subscription, CallError> {
        let limits = self.engine.limits();
        let check = |what: &str, t: &str| {
            if !self.owns_key(t) {
                Err(CallError::BadOutput(format!(
                    "{what} {t:?} does not start with \"{}:\"",
                    self.route
                )))
            } else if t.len() > limits.max_topic_bytes {
                Err(CallError::BadOutput(format!(
                    "{what} is {} bytes, over the limit of {}",
                    t.len(),
                    limits.max_topic_bytes
                )))
            } else {
                Ok(())
            }
        };
        check("topic", &answer.topic)?;
        if answer.keys.is_empty() {
            return Err(CallError::BadOutput("no keys".to_owned()));
        }
        if answer.keys.len() > limits.max_keys {
            return Err(CallError::BadOutput(format!(
                "{} keys, over the limit of {}",
                answer.keys.len(),
                limits.max_keys
            )));
        }
        for key in &answer.keys {
            check("key", key)?;
        }
        let mut keys: Vec<Arc<str>> = answer.keys.into_iter().map(Arc::from).collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(Subscription {
            topic: Arc::from(answer.topic),
            keys,
        })
    }

    /// Whether the subject of `claims` (the verified token's claims as JSON
    /// text, `null` without authentication) may subscribe with `request`
    /// (canonical JSON): the optional WIT `authorize`. A plugin without it
    /// allows everything the host's own checks allow. A refusal is
    /// [`CallError::Rejected`] with the plugin's message; a plugin that
    /// fails or does not answer refuses too. The same question asked again
    /// within [`Limits::authorize_memory`](super::Limits) gets the same
    /// answer without a call (see [`AuthorizeCache`]).
    pub async fn authorize(&self, claims: &str, request: &str) -> Result<(), CallError> {
        let Some(export) = &self.authorize else {
            return Ok(());
        };
        let verdict = match self.authorized.get(claims, request) {
            Some(verdict) => verdict,
            None => match self.call(Call::Authorize(export, claims, request)).await? {
                Answer::Authorize(verdict) => {
                    self.authorized.insert(claims, request, &verdict);
                    verdict
                }
                Answer::Topics(_) => {
                    return Err(CallError::BadOutput("a topics answer".to_owned()));
                }
            },
        };
        verdict.map_err(CallError::Rejected)
    }

    async fn call_topics(
        &self,
        request: &str,
    ) -> Result<Result<wit::Subscription, wit::TopicError>, CallError> {
        match self.call(Call::Topics(request)).await? {
            Answer::Topics(answer) => Ok(answer),
            Answer::Authorize(_) => Err(CallError::BadOutput("an authorize answer".to_owned())),
        }
    }

    /// One call: wait (until the deadline) for a free slot, then run the
    /// call on an idle or new instance, bounded in wall-clock time as well
    /// as by the epoch check, since a plugin waiting in WASI (a sleep) runs
    /// no wasm code that the epoch check could stop.
    async fn call(&self, call: Call<'_>) -> Result<Answer, CallError> {
        let limits = self.engine.limits();
        let waited_until = Instant::now() + limits.deadline;
        let Some(_slot) = self.pool.slot(waited_until).await else {
            return Err(CallError::Busy(self.pool.max()));
        };
        let deadline = Instant::now() + limits.deadline;
        let span = tracing::trace_span!("plugin_call", route = %self.info.name, call = call.name());
        let name = call.name();
        let call = async {
            let mut pooled = self.checkout(deadline).await?;
            let instance = &mut pooled.instance;
            self.engine.arm(&mut instance.store, deadline);
            let answer = match call {
                Call::Topics(request) => instance
                    .bindings
                    .ws_router_plugin_route()
                    .call_topics(&mut instance.store, request)
                    .await
                    .map(Answer::Topics),
                Call::Authorize(export, claims, request) => {
                    call_authorize(instance, export, claims, request)
                        .await
                        .map(Answer::Authorize)
                }
            }
            // The instance may be mid-way through anything: dropped.
            .map_err(|trap| self.engine.classify(trap, deadline))?;
            self.pool.give_back(pooled);
            Ok(answer)
        };
        // Instrumented rather than entered: the call is awaited, and a span
        // entered across an await would tag whatever runs while it waits.
        // Past the deadline the call's future is dropped, and with it the
        // instance.
        let started = Instant::now();
        let result = tokio::time::timeout_at(deadline.into(), call.instrument(span))
            .await
            .unwrap_or_else(|_| Err(self.engine.deadline_error()));
        self.engine
            .observe(&self.route, name, result.is_ok(), started.elapsed());
        result.inspect_err(|e| self.record_failure(e))
    }

    fn record_failure(&self, err: &CallError) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let detail = match err {
            CallError::Trap(d) | CallError::BadOutput(d) => d.as_str(),
            _ => "",
        };
        tracing::warn!(route = %self.info.name, failures = n, error = %err, detail, "plugin call failed");
    }

    async fn checkout(&self, deadline: Instant) -> Result<Pooled, CallError> {
        if let Some(pooled) = self.pool.take() {
            return Ok(pooled);
        }
        // Boxed: a new instance is the rare case, and its future is large;
        // inline, every call's future would carry (and move) it.
        let instance = Box::pin(self.engine.instantiate(&self.pre, &self.output, deadline))
            .await
            .map_err(|e| CallError::Trap(format!("instantiate: {e:#}")))?;
        Ok(self.pool.adopt(instance))
    }

    /// Instances alive now, and the most the plugin may have.
    pub fn instances(&self) -> (usize, usize) {
        (self.pool.live(), self.pool.max())
    }
}

/// A call into a plugin.
enum Call<'a> {
    Topics(&'a str),
    Authorize(&'a ComponentExportIndex, &'a str, &'a str),
}

impl Call<'_> {
    fn name(&self) -> &'static str {
        match self {
            Call::Topics(_) => "topics",
            Call::Authorize(..) => "authorize",
        }
    }
}

enum Answer {
    Topics(Result<wit::Subscription, wit::TopicError>),
    Authorize(Result<(), String>),
}

/// `authorize(claims, request)` through the raw instance: the optional
/// interface is not in the host's generated bindings.
async fn call_authorize(
    instance: &mut Instance,
    export: &ComponentExportIndex,
    claims: &str,
    request: &str,
) -> wasmtime::Result<Result<(), String>> {
    let func = instance
        .instance
        .get_typed_func::<(&str, &str), (Result<(), String>,)>(&mut instance.store, export)?;
    let (answer,) = func
        .call_async(&mut instance.store, (claims, request))
        .await?;
    Ok(answer)
}

/// Remembered `topics` answers of one plugin version, by request text,
/// bounded in bytes (requests and keys are client-sized). It dies with the
/// version: an upgraded plugin starts with an empty cache.
pub(super) struct TopicsCache {
    cache: quick_cache::sync::Cache<Box<str>, Resolved, ByBytes>,
}

/// One remembered answer.
#[derive(Clone)]
struct Resolved {
    subscription: Subscription,
    /// The request's canonical form, when it was checked against this
    /// version's request schema.
    canonical: Option<Arc<str>>,
}

/// The bytes an entry holds.
#[derive(Clone)]
pub(super) struct ByBytes;

impl quick_cache::Weighter<Box<str>, Resolved> for ByBytes {
    fn weight(&self, request: &Box<str>, hit: &Resolved) -> u64 {
        let sub = &hit.subscription;
        let keys: usize = sub.keys.iter().map(|k| k.len() + 16).sum();
        let canonical = hit.canonical.as_ref().map_or(0, |c| c.len() + 16);
        (request.len() + sub.topic.len() + keys + canonical + 64) as u64
    }
}

/// Bytes of answers kept per plugin version.
const TOPICS_CACHE_BYTES: u64 = 8 << 20;

impl TopicsCache {
    pub(super) fn new() -> TopicsCache {
        TopicsCache {
            cache: quick_cache::sync::Cache::with_weighter(10_000, TOPICS_CACHE_BYTES, ByBytes),
        }
    }

    fn get(&self, request: &str) -> Option<Resolved> {
        self.cache.get(request)
    }

    fn insert(&self, request: &str, resolved: Resolved) {
        self.cache.insert(Box::from(request), resolved);
    }
}
