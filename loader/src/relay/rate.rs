//! The per-policy rate limiter: a token bucket of `rate` decisions per
//! second that holds at most one second's worth.

use std::time::Instant;

pub struct RateLimiter {
    rate: f64,
    tokens: f64,
    last_refill: Instant,
}

impl RateLimiter {
    /// Starts full.
    pub fn new(per_second: u32) -> Self {
        RateLimiter {
            rate: per_second as f64,
            tokens: per_second as f64,
            last_refill: Instant::now(),
        }
    }

    /// Takes one token when there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        let el = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.last_refill = now;
        self.tokens = (self.tokens + el * self.rate).min(self.rate);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_empties_and_refills_at_the_rate() {
        let mut r = RateLimiter::new(2);
        let t = r.last_refill;
        assert!(r.try_take_at(t));
        assert!(r.try_take_at(t));
        assert!(!r.try_take_at(t));
        // Half a second at 2/s is one token.
        assert!(r.try_take_at(t + Duration::from_millis(500)));
        assert!(!r.try_take_at(t + Duration::from_millis(500)));
        // A long pause refills only up to the rate.
        let later = t + Duration::from_secs(60);
        assert!(r.try_take_at(later) && r.try_take_at(later));
        assert!(!r.try_take_at(later));
    }
}
