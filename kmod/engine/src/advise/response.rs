//! The advisor's response record (/proc/llamux/advise): written by the
//! engine in the kernel, parsed by the loader.
//!
//!   "BEST EVENT_TOKENS PREFIX_TOKENS N BITS_1 .. BITS_N\n"
//!
//! BITS_i: answer i's score (summed log-probability) as the raw f32 bits in
//! 8 hex digits (the module is soft-float and only passes text through, and
//! the loader gets the exact scores).

use core::fmt;

use super::MAX_ANSWERS;

/// A decision: the best answer, the tokens it cost and every score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Response {
    pub best: usize,
    pub event_tokens: usize,
    pub prefix_tokens: usize,
    scores: [f32; MAX_ANSWERS],
    n: usize,
}

impl Response {
    /// None when `scores` is empty, longer than MAX_ANSWERS, or `best` is
    /// not one of its indices.
    pub fn new(
        best: usize,
        event_tokens: usize,
        prefix_tokens: usize,
        scores: &[f32],
    ) -> Option<Self> {
        if scores.is_empty() || scores.len() > MAX_ANSWERS || best >= scores.len() {
            return None;
        }
        let mut s = [0f32; MAX_ANSWERS];
        s.get_mut(..scores.len())?.copy_from_slice(scores);
        Some(Response {
            best,
            event_tokens,
            prefix_tokens,
            scores: s,
            n: scores.len(),
        })
    }

    pub fn scores(&self) -> &[f32] {
        self.scores.get(..self.n).unwrap_or(&[])
    }

    /// Writes the record (one line, with its newline).
    pub fn encode(&self, w: &mut impl fmt::Write) -> fmt::Result {
        write!(
            w,
            "{} {} {} {}",
            self.best, self.event_tokens, self.prefix_tokens, self.n
        )?;
        for s in self.scores() {
            write!(w, " {:08x}", s.to_bits())?;
        }
        writeln!(w)
    }

    /// Parses a record (the trailing newline is optional). None when it is
    /// malformed: not five or more words, a count that does not match the
    /// scores, a best index out of range, a score not 8 hex digits.
    pub fn parse(text: &[u8]) -> Option<Self> {
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let mut words = text.split(|&c| c == b' ');
        let mut num = || -> Option<usize> {
            let w = words.next()?;
            usize::try_from(super::request::parse_u64(w)?).ok()
        };
        let (best, ev, pre, n) = (num()?, num()?, num()?, num()?);
        if n == 0 || n > MAX_ANSWERS || best >= n {
            return None;
        }
        let mut scores = [0f32; MAX_ANSWERS];
        for s in scores.iter_mut().take(n) {
            let w = words.next()?;
            if w.len() != 8 || !w.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let bits = u32::from_str_radix(core::str::from_utf8(w).ok()?, 16).ok()?;
            *s = f32::from_bits(bits);
        }
        if words.next().is_some() {
            return None;
        }
        Some(Response {
            best,
            event_tokens: ev,
            prefix_tokens: pre,
            scores,
            n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn round_trip_keeps_exact_bits() {
        let scores = [-1.25f32, -0.0, f32::MIN_POSITIVE, -3.4e38];
        let r = Response::new(1, 17, 5, &scores).unwrap();
        let mut s = String::new();
        r.encode(&mut s).unwrap();
        assert_eq!(s, "1 17 5 4 bfa00000 80000000 00800000 ff7fc99e\n");
        let p = Response::parse(s.as_bytes()).unwrap();
        assert_eq!(p, r);
        assert_eq!(
            p.scores()
                .iter()
                .map(|s| s.to_bits())
                .collect::<alloc::vec::Vec<_>>(),
            scores.map(f32::to_bits)
        );
        assert_eq!(Response::parse(s.trim_end().as_bytes()), Some(r));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "\n",
            "0 1 2",
            "0 1 2 0",
            "2 1 2 2 00000000 00000000",
            "0 1 2 2 00000000",
            "0 1 2 1 00000000 00000000",
            "0 1 2 1 0000000",
            "0 1 2 1 0000000g",
            "0 1 2 1 +0000000",
            "0  1 2 1 00000000",
            "-0 1 2 1 00000000",
            "0 1 2 17 00000000",
            "0 1 2 1 00000000\n\n",
        ] {
            assert_eq!(Response::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert!(Response::new(0, 0, 0, &[]).is_none());
        assert!(Response::new(1, 0, 0, &[0.0]).is_none());
        assert!(Response::new(0, 0, 0, &[0.0; MAX_ANSWERS + 1]).is_none());
    }
}
