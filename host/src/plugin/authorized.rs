//! `authorize` answers remembered for a moment, per plugin version.
//!
//! The contract asks `authorize` to be a pure function of the claims and
//! the canonical request, as `topics` is of the request. A watch list many
//! clients subscribe to at once (a reconnect storm after a deploy) would
//! otherwise cost one WebAssembly call per subscribe for the same answer.
//! Answers are kept only for [`Limits::authorize_memory`](super::Limits)
//! (0 keeps none), so a plugin that consults the clock anyway is at most
//! that late, and the cache dies with the version on reload.
//!
//! Only the plugin's own answers are kept (allowed, or refused with its
//! message): a trap, an overrun or a busy pool is asked again next time.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// Bytes of answers kept per plugin version.
const BYTES: u64 = 4 << 20;

pub(super) struct AuthorizeCache {
    cache: quick_cache::sync::Cache<Asked, Answer, ByBytes>,
    keep_for: Duration,
}

/// What the plugin was asked (owned, the cache's key).
#[derive(PartialEq, Eq)]
struct Asked {
    claims: Box<str>,
    request: Box<str>,
}

/// What a caller asks (borrowed, to look up without allocating).
struct Asking<'a> {
    claims: &'a str,
    request: &'a str,
}

// Both hash as the pair of texts, so that a borrowed lookup finds the
// owned key.
impl Hash for Asked {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (&*self.claims, &*self.request).hash(state);
    }
}

impl Hash for Asking<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.claims, self.request).hash(state);
    }
}

impl quick_cache::Equivalent<Asked> for Asking<'_> {
    fn equivalent(&self, key: &Asked) -> bool {
        *key.claims == *self.claims && *key.request == *self.request
    }
}

#[derive(Clone)]
struct Answer {
    verdict: Result<(), Box<str>>,
    until: Instant,
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<Asked, Answer> for ByBytes {
    fn weight(&self, asked: &Asked, answer: &Answer) -> u64 {
        let message = answer.verdict.as_ref().err().map_or(0, |m| m.len());
        (asked.claims.len() + asked.request.len() + message + 64) as u64
    }
}

impl AuthorizeCache {
    pub(super) fn new(keep_for: Duration) -> AuthorizeCache {
        AuthorizeCache {
            cache: quick_cache::sync::Cache::with_weighter(10_000, BYTES, ByBytes),
            keep_for,
        }
    }

    /// The plugin's answer to the same question, if it was given recently.
    pub(super) fn get(&self, claims: &str, request: &str) -> Option<Result<(), String>> {
        if self.keep_for.is_zero() {
            return None;
        }
        let answer = self.cache.get(&Asking { claims, request })?;
        if Instant::now() >= answer.until {
            return None;
        }
        Some(answer.verdict.map_err(String::from))
    }

    /// Remember the plugin's own answer (not a failure to answer).
    pub(super) fn insert(&self, claims: &str, request: &str, verdict: &Result<(), String>) {
        if self.keep_for.is_zero() {
            return;
        }
        let asked = Asked {
            claims: claims.into(),
            request: request.into(),
        };
        let answer = Answer {
            verdict: verdict.as_ref().map_err(|m| m.as_str().into()).copied(),
            until: Instant::now() + self.keep_for,
        };
        self.cache.insert(asked, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_found_by_the_same_question_only_and_expires() {
        let cache = AuthorizeCache::new(Duration::from_millis(50));
        cache.insert("null", r#"{"a":1}"#, &Ok(()));
        cache.insert(r#"{"sub":"u"}"#, r#"{"a":1}"#, &Err("no".to_owned()));
        assert_eq!(cache.get("null", r#"{"a":1}"#), Some(Ok(())));
        assert_eq!(
            cache.get(r#"{"sub":"u"}"#, r#"{"a":1}"#),
            Some(Err("no".to_owned()))
        );
        assert_eq!(cache.get("null", r#"{"a":2}"#), None);
        // The separator between the texts is not ambiguous.
        assert_eq!(cache.get("null{", r#""a":1}"#), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("null", r#"{"a":1}"#), None);
    }

    #[test]
    fn a_flood_of_distinct_questions_stays_within_its_bytes() {
        let cache = AuthorizeCache::new(Duration::from_secs(60));
        let claims = "c".repeat(1000);
        for i in 0..20_000 {
            cache.insert(&claims, &format!("{{\"n\":{i}}}"), &Err("no".repeat(100)));
        }
        assert!(cache.cache.weight() <= BYTES, "{}", cache.cache.weight());
    }

    #[test]
    fn zero_keeps_nothing() {
        let cache = AuthorizeCache::new(Duration::ZERO);
        cache.insert("null", "{}", &Ok(()));
        assert_eq!(cache.get("null", "{}"), None);
    }
}
