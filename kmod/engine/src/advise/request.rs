//! The advisor's request record (/proc/llamux/advise): written by the
//! loader, passed through unchanged by the module, parsed by the engine.
//!
//!   "llxa2 CTX FLAGS PREFIX_LEN EVENT_LEN SUFFIX_LEN N_ANSWERS A_LEN_1 .. A_LEN_N\n"
//!   then PREFIX_LEN bytes of policy prefix text, EVENT_LEN bytes of event
//!   text, SUFFIX_LEN bytes of policy suffix text (after the event: it
//!   closes a chat prompt's user turn) and the N answer texts (A_LEN_i
//!   bytes each), back to back.
//!
//! FLAGS: REQ_CHAT (1) asks for a chat-format prompt: prefix and suffix
//! are the policy's own text and their control-token spellings become
//! control tokens; the event and the answers are always plain text (an
//! `<|im_start|>` in an event value stays text). With REQ_CHAT the advisor
//! is laid out as `super::layout` says (batch 128, the context grown to
//! hold the prefix). Without it the suffix must be empty: the plain
//! prompt of before. Other bits are refused.
//!
//! Numbers are decimal; the byte counts must add up to the record exactly.
//! The bytes come from user space: parsing never panics and never indexes
//! out of range (every slice is cut with checked arithmetic).

use alloc::vec::Vec;

use super::MAX_ANSWERS;

/// Largest CTX a request may ask for.
pub const MAX_CTX: usize = 1 << 20;

/// FLAGS bit: a chat-format prompt (control tokens in prefix and suffix).
pub const REQ_CHAT: u32 = 1;

/// A parsed request record, borrowing the record's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub ctx: usize,
    /// REQ_* bits.
    pub flags: u32,
    pub prefix: &'a [u8],
    pub event: &'a [u8],
    pub suffix: &'a [u8],
    /// All answer texts back to back (`lens` splits them).
    answers: &'a [u8],
    lens: [usize; MAX_ANSWERS],
    n: usize,
}

/// A decimal number without sign; None on anything else or on overflow.
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut x: u64 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return None;
        }
        x = x.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(x)
}

impl<'a> Request<'a> {
    /// None when the record is malformed: bad header, unknown FLAGS bits,
    /// a suffix without REQ_CHAT, 0 or more than MAX_ANSWERS answers, an
    /// empty answer or event, CTX 0 or over MAX_CTX, or byte counts that
    /// do not add up to the body.
    pub fn parse(req: &'a [u8]) -> Option<Self> {
        let nl = req.iter().position(|&c| c == b'\n')?;
        let (head, body) = req.split_at(nl);
        let body = body.get(1..)?;
        let mut words = head.split(|&c| c == b' ').filter(|w| !w.is_empty());
        if words.next()? != b"llxa2" {
            return None;
        }
        let mut num = || -> Option<usize> { usize::try_from(parse_u64(words.next()?)?).ok() };
        let ctx = num()?;
        let flags = u32::try_from(num()?).ok()?;
        let plen = num()?;
        let elen = num()?;
        let slen = num()?;
        let n = num()?;
        if n == 0 || n > MAX_ANSWERS || ctx == 0 || ctx > MAX_CTX || elen == 0 {
            return None;
        }
        if flags & !REQ_CHAT != 0 || (flags & REQ_CHAT == 0 && slen != 0) {
            return None;
        }
        let mut lens = [0usize; MAX_ANSWERS];
        let mut alen: usize = 0;
        for l in lens.iter_mut().take(n) {
            *l = num()?;
            if *l == 0 {
                return None;
            }
            alen = alen.checked_add(*l)?;
        }
        if words.next().is_some() {
            return None;
        }
        if plen
            .checked_add(elen)?
            .checked_add(slen)?
            .checked_add(alen)?
            != body.len()
        {
            return None;
        }
        let (prefix, rest) = body.split_at(plen);
        let (event, rest) = rest.split_at(elen);
        let (suffix, answers) = rest.split_at(slen);
        Some(Request {
            ctx,
            flags,
            prefix,
            event,
            suffix,
            answers,
            lens,
            n,
        })
    }

    /// A chat-format prompt (REQ_CHAT).
    pub fn chat(&self) -> bool {
        self.flags & REQ_CHAT != 0
    }

    pub fn n_answers(&self) -> usize {
        self.n
    }

    /// Byte length of each answer text.
    pub fn answer_lens(&self) -> &[usize] {
        self.lens.get(..self.n).unwrap_or(&[])
    }

    /// All answer texts back to back.
    pub fn answers_bytes(&self) -> &'a [u8] {
        self.answers
    }

    /// The answer texts, in order.
    pub fn answers(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let mut rest = self.answers;
        self.answer_lens().iter().map(move |&l| {
            // parse() checked that the lengths add up to `answers`.
            let (a, r) = rest.split_at(l.min(rest.len()));
            rest = r;
            a
        })
    }
}

/// Writes the request record for these texts (the loader's side).
/// `suffix` is only sent with REQ_CHAT in `flags` (parse refuses it
/// otherwise).
pub fn encode(
    ctx: usize,
    flags: u32,
    prefix: &[u8],
    event: &[u8],
    suffix: &[u8],
    answers: &[&[u8]],
) -> Vec<u8> {
    use core::fmt::Write;
    let mut head = alloc::string::String::new();
    // Writing into a String cannot fail.
    let _ = write!(
        head,
        "llxa2 {ctx} {flags} {} {} {} {}",
        prefix.len(),
        event.len(),
        suffix.len(),
        answers.len()
    );
    for a in answers {
        let _ = write!(head, " {}", a.len());
    }
    head.push('\n');
    let mut r = head.into_bytes();
    r.extend_from_slice(prefix);
    r.extend_from_slice(event);
    r.extend_from_slice(suffix);
    for a in answers {
        r.extend_from_slice(a);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let answers: [&[u8]; 3] = [b" Y", b" N", b"maybe"];
        let r = encode(512, 0, b"Prefix.", b"ev", b"", &answers);
        assert_eq!(r, b"llxa2 512 0 7 2 0 3 2 2 5\nPrefix.ev Y Nmaybe");
        let p = Request::parse(&r).unwrap();
        assert_eq!(
            (p.ctx, p.flags, p.prefix, p.event, p.suffix, p.n_answers()),
            (512, 0, &b"Prefix."[..], &b"ev"[..], &b""[..], 3)
        );
        assert!(!p.chat());
        assert_eq!(p.answers().collect::<Vec<_>>(), answers);
        assert_eq!(p.answer_lens(), [2, 2, 5]);
    }

    #[test]
    fn round_trip_chat() {
        let answers: [&[u8]; 2] = [b"Yes", b"No"];
        let r = encode(
            256,
            REQ_CHAT,
            b"<|im_start|>user\n",
            b"ev <|im_end|>",
            b"<|im_end|>\n<|im_start|>assistant\n",
            &answers,
        );
        let p = Request::parse(&r).unwrap();
        assert!(p.chat());
        assert_eq!(
            (p.prefix, p.event, p.suffix),
            (
                &b"<|im_start|>user\n"[..],
                &b"ev <|im_end|>"[..],
                &b"<|im_end|>\n<|im_start|>assistant\n"[..]
            )
        );
        assert_eq!(p.answers().collect::<Vec<_>>(), answers);
    }

    #[test]
    fn rejects_malformed() {
        let ok = encode(64, 0, b"P", b"e", b"", &[b"a", b"b"]);
        assert!(Request::parse(&ok).is_some());
        assert!(Request::parse(b"llxa2 64 1 1 1 1 2 1 1\nPeSab").is_some());
        for bad in [
            &b"llxa2 64 0 1 1 0 2 1 1\nPeab!"[..], // body longer than the counts
            b"llxa2 64 0 1 1 0 2 1 1\nPea",        // shorter
            b"llxa2 64 0 1 1 0 2 1 0\nPeab",       // empty answer
            b"llxa2 64 0 1 0 0 2 1 1\nPab",        // empty event
            b"llxa2 0 0 1 1 0 2 1 1\nPeab",        // ctx 0
            b"llxa2 64 0 1 1 0 0\nPe",             // no answers
            b"llxa2 64 0 1 1 0 17 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\nPe11111111111111111",
            b"llxa2 64 0 1 1 0 2 1 1 1\nPeab", // a word too many
            b"llxa2 64 0 1 1 0 2 1\nPea",      // a length missing
            b"llxa1 64 1 1 2 1 1\nPeab",       // the old record
            b"llxa2 64 0 -1 1 0 2 1 1\nPeab",
            b"llxa2 64 0 18446744073709551615 1 0 2 1 1\nPeab", // sum overflows
            b"llxa2 64 0 1 1 18446744073709551615 2 1 1\nPeab", // sum overflows
            b"llxa2 64 0 99999999999999999999 1 0 2 1 1\nPeab", // over u64
            b"llxa2 64 0 1 1 0 2 1 1",                          // no newline
            b"llxa2 64 0 1 1 1 2 1 1\nPeSab",                   // a suffix without REQ_CHAT
            b"llxa2 64 2 1 1 0 2 1 1\nPeab",                    // an unknown flag
            b"llxa2 64 4294967297 1 1 0 2 1 1\nPeab",           // flags over u32
        ] {
            assert_eq!(Request::parse(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }
}
