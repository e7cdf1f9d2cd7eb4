//! A client's command rate: a token bucket holding one second's worth.
//!
//! A command that finds the bucket empty is not refused: it waits for its
//! token, and the transport stops reading the connection meanwhile, so TCP
//! slows the client down (a watch list subscribed at page load just takes a
//! little longer). A client held back continuously for longer than the
//! configured time is abusive and is closed.

use std::time::{Duration, Instant};

/// Commands per second, with bursts of as many.
pub struct RateLimit {
    per_sec: f64,
    /// Negative while commands wait for tokens not yet refilled.
    tokens: f64,
    refilled: Instant,
    /// Since when every command has had to wait.
    throttled_since: Option<Instant>,
    close_after: Duration,
}

/// What to do with one command.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Handle it now.
    Now,
    /// Handle it after this wait, reading nothing meanwhile.
    After(Duration),
    /// The client has been held back for longer than allowed: close it.
    Abusive,
}

impl RateLimit {
    /// `per_sec` commands per second; a client that must wait for every
    /// command for `close_after` is abusive.
    pub fn new(per_sec: u32, close_after: Duration) -> Self {
        Self::starting_at(per_sec, close_after, Instant::now())
    }

    fn starting_at(per_sec: u32, close_after: Duration, now: Instant) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        RateLimit {
            per_sec,
            tokens: per_sec,
            refilled: now,
            throttled_since: None,
            close_after,
        }
    }

    pub fn admit(&mut self) -> Admission {
        self.admit_at(Instant::now())
    }

    fn admit_at(&mut self, now: Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.per_sec);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.throttled_since = None;
            return Admission::Now;
        }
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec);
        let since = *self.throttled_since.get_or_insert(now);
        if (now + wait).duration_since(since) >= self.close_after {
            return Admission::Abusive;
        }
        // The token is taken now; it refills during the wait.
        self.tokens -= 1.0;
        Admission::After(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn allows_a_burst_then_paces_then_refills() {
        let start = Instant::now();
        let mut rate = RateLimit::starting_at(10, LONG, start);
        for _ in 0..10 {
            assert_eq!(rate.admit_at(start), Admission::Now);
        }
        // The 11th waits a tenth of a second, the 12th two tenths.
        let Admission::After(wait) = rate.admit_at(start) else {
            panic!("not paced");
        };
        assert_eq!(wait.as_millis(), 100);
        let Admission::After(wait) = rate.admit_at(start) else {
            panic!("not paced");
        };
        assert_eq!(wait.as_millis(), 200);
        // After a quiet second the burst is back.
        let later = start + Duration::from_millis(1300);
        for _ in 0..10 {
            assert_eq!(rate.admit_at(later), Admission::Now);
        }
    }

    #[test]
    fn a_paced_burst_is_served_in_order() {
        // 150 at once at 100/s: 100 now, then one every 10 ms, each handled
        // once its wait is over.
        let mut now = Instant::now();
        let mut rate = RateLimit::starting_at(100, Duration::from_secs(5), now);
        let mut waited = Duration::ZERO;
        for _ in 0..150 {
            match rate.admit_at(now) {
                Admission::Now => {}
                Admission::After(wait) => {
                    waited += wait;
                    now += wait;
                }
                Admission::Abusive => panic!("a burst is not abuse"),
            }
        }
        assert!((490..=510).contains(&waited.as_millis()), "{waited:?}");
    }

    #[test]
    fn continuous_throttling_for_too_long_is_abuse() {
        let mut now = Instant::now();
        let mut rate = RateLimit::starting_at(5, Duration::from_secs(1), now);
        let mut verdicts = Vec::new();
        for _ in 0..12 {
            let verdict = rate.admit_at(now);
            if let Admission::After(wait) = verdict {
                now += wait;
            }
            verdicts.push(verdict);
        }
        // A burst of 5, four paced (200 ms each), then a whole second of
        // waiting: closed.
        assert!(verdicts[..5].iter().all(|v| *v == Admission::Now));
        assert!(
            verdicts[5..9]
                .iter()
                .all(|v| matches!(v, Admission::After(_)))
        );
        assert_eq!(verdicts[9], Admission::Abusive);
    }

    #[test]
    fn a_pause_ends_the_throttling() {
        let mut now = Instant::now();
        let mut rate = RateLimit::starting_at(5, Duration::from_secs(1), now);
        for round in 0..5 {
            // Six at once, then a pause: never a whole second of waiting.
            for _ in 0..6 {
                match rate.admit_at(now) {
                    Admission::Abusive => panic!("round {round}: not abuse"),
                    Admission::After(wait) => now += wait,
                    Admission::Now => {}
                }
            }
            now += Duration::from_secs(2);
        }
    }
}
