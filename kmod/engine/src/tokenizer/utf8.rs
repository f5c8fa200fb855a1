//! Streamed token bytes as valid UTF-8 (what `/proc/llamux/generate` and
//! the loader print as tokens arrive).

use super::TokenizerError;

/// Assembles streamed token bytes into valid UTF-8: a character split over
/// several byte tokens is held back until complete; bytes that cannot be
/// part of a character come out as U+FFFD (like `String::from_utf8_lossy`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Stream {
    pending: [u8; 4],
    n: u8,
}

const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

impl Utf8Stream {
    pub const fn new() -> Self {
        Utf8Stream {
            pending: [0; 4],
            n: 0,
        }
    }

    /// Bytes held back for an unfinished character.
    pub fn pending(&self) -> &[u8] {
        &self.pending[..self.n as usize]
    }

    /// Appends `bytes` and writes every completed character to `out`;
    /// returns the length written. On OutputTooSmall nothing is consumed.
    /// `out` of `3 * (bytes.len() + 3)` bytes always suffices.
    pub fn push(&mut self, bytes: &[u8], out: &mut [u8]) -> Result<usize, TokenizerError> {
        let (needed, _) = self.run(bytes, false, &mut |_, _| {});
        if needed > out.len() {
            return Err(TokenizerError::OutputTooSmall { needed });
        }
        let (n, pend) = self.run(bytes, false, &mut |at, s| {
            out[at..at + s.len()].copy_from_slice(s)
        });
        *self = pend;
        Ok(n)
    }

    /// Ends the stream: an unfinished character comes out as U+FFFD.
    pub fn finish(&mut self, out: &mut [u8]) -> Result<usize, TokenizerError> {
        let (needed, _) = self.run(&[], true, &mut |_, _| {});
        if needed > out.len() {
            return Err(TokenizerError::OutputTooSmall { needed });
        }
        let (n, _) = self.run(&[], true, &mut |at, s| {
            out[at..at + s.len()].copy_from_slice(s)
        });
        *self = Utf8Stream::new();
        Ok(n)
    }

    /// [`push`](Self::push) for user space, which may allocate: the
    /// completed text as a `String`.
    #[cfg(feature = "std")]
    pub fn push_string(&mut self, bytes: &[u8]) -> std::string::String {
        let mut s = std::string::String::new();
        let (_, pend) = self.run(bytes, false, &mut |_, p| {
            // Every piece is one valid character or U+FFFD.
            s.push_str(core::str::from_utf8(p).unwrap_or("\u{FFFD}"))
        });
        *self = pend;
        s
    }

    /// [`finish`](Self::finish) for user space.
    #[cfg(feature = "std")]
    pub fn finish_string(&mut self) -> std::string::String {
        let mut s = std::string::String::new();
        let _ = self.run(&[], true, &mut |_, p| {
            s.push_str(core::str::from_utf8(p).unwrap_or("\u{FFFD}"))
        });
        *self = Utf8Stream::new();
        s
    }

    /// Decodes pending + `bytes`, handing each output piece to `emit(at, s)`;
    /// returns the output length and the state after.
    fn run(
        &self,
        bytes: &[u8],
        flush: bool,
        emit: &mut dyn FnMut(usize, &[u8]),
    ) -> (usize, Utf8Stream) {
        let np = self.n as usize;
        let total = np + bytes.len();
        let at = |i: usize| {
            if i < np {
                self.pending[i]
            } else {
                bytes[i - np]
            }
        };
        let mut written = 0;
        let mut i = 0;
        while i < total {
            let mut w = [0u8; 4];
            let wn = (total - i).min(4);
            for (k, b) in w.iter_mut().enumerate().take(wn) {
                *b = at(i + k);
            }
            let (take, valid) = match core::str::from_utf8(&w[..wn]) {
                Ok(s) => (s.chars().next().map_or(1, |c| c.len_utf8()), true),
                Err(e) if e.valid_up_to() > 0 => (utf8_len_valid(w[0]), true),
                Err(e) => match e.error_len() {
                    Some(k) => (k, false),
                    // Unfinished character at the end of what we have.
                    None if !flush => {
                        let mut pend = Utf8Stream::new();
                        pend.n = wn as u8;
                        pend.pending[..wn].copy_from_slice(&w[..wn]);
                        return (written, pend);
                    }
                    None => (wn, false),
                },
            };
            if valid {
                emit(written, &w[..take]);
                written += take;
            } else {
                emit(written, REPLACEMENT);
                written += REPLACEMENT.len();
            }
            i += take;
        }
        (written, Utf8Stream::new())
    }
}

/// Length of a valid UTF-8 character from its lead byte.
fn utf8_len_valid(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}
