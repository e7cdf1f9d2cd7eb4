//! A client's command rate: a token bucket holding one second's worth.

use std::time::{Duration, Instant};

/// Commands per second, with bursts of as many.
pub struct RateLimit {
    per_sec: f64,
    tokens: f64,
    refilled: Instant,
    /// Commands refused in the current one-second window.
    refused: u32,
    window: Instant,
}

/// What to do with one command.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    Refused,
    /// Refused again and again: the client ignores the error replies.
    Abusive,
}

impl RateLimit {
    pub fn new(per_sec: u32) -> Self {
        Self::starting_at(per_sec, Instant::now())
    }

    fn starting_at(per_sec: u32, now: Instant) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        RateLimit {
            per_sec,
            tokens: per_sec,
            refilled: now,
            refused: 0,
            window: now,
        }
    }

    pub fn admit(&mut self) -> Admission {
        self.admit_at(Instant::now())
    }

    fn admit_at(&mut self, now: Instant) -> Admission {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.per_sec);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Allowed;
        }
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.refused = 0;
        }
        self.refused += 1;
        // Twice the allowed rate for a whole second is not an accident.
        if f64::from(self.refused) > self.per_sec {
            Admission::Abusive
        } else {
            Admission::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refuses_then_refills() {
        let start = Instant::now();
        let mut rate = RateLimit::starting_at(10, start);
        for _ in 0..10 {
            assert_eq!(rate.admit_at(start), Admission::Allowed);
        }
        assert_eq!(rate.admit_at(start), Admission::Refused);
        // A tenth of a second refills one token.
        let later = start + Duration::from_millis(100);
        assert_eq!(rate.admit_at(later), Admission::Allowed);
        assert_eq!(rate.admit_at(later), Admission::Refused);
    }

    #[test]
    fn ignoring_refusals_for_a_second_is_abuse() {
        let start = Instant::now();
        let mut rate = RateLimit::starting_at(5, start);
        let verdicts: Vec<Admission> = (0..11).map(|_| rate.admit_at(start)).collect();
        assert_eq!(verdicts[..5], [(); 5].map(|_| Admission::Allowed));
        assert_eq!(verdicts[5..10], [(); 5].map(|_| Admission::Refused));
        assert_eq!(verdicts[10], Admission::Abusive);
    }
}
