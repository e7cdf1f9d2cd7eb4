//! The hasher of the hub's maps whose keys clients and plugins choose
//! (routing keys, topics, requests): aHash, keyed at random per map, which
//! resists hash flooding as std's SipHash does at a fraction of its cost on
//! short keys. Every subscribe and every publication hashes its keys
//! several times (shard, registry, history, interest).

pub(crate) type RandomState = ahash::RandomState;
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, RandomState>;
