//! The Unicode facts the Qwen2 pre-tokenizer needs, as llama.cpp's
//! `unicode.cpp` has them: codepoints from (possibly invalid) UTF-8, and
//! letter / number / whitespace classes from a compact generated table.

#[path = "unicode_data.rs"]
mod data;

/// A codepoint's class, the part of llama.cpp's `unicode_cpt_flags` the
/// split looks at. `Flags::default()` is what llama.cpp gives positions
/// outside the text: all flags clear.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(super) struct Flags(u8);

impl Flags {
    const KIND: u8 = 3;
    const OTHER: u8 = 1;
    const LETTER: u8 = 2;
    const NUMBER: u8 = 3;
    const SPACE: u8 = 4;

    pub(super) fn of(cpt: u32) -> Flags {
        if cpt >= 0x110000 {
            return Flags(Self::OTHER); // UNDEFINED
        }
        // The last run starting at or before cpt.
        let i = data::RUNS.partition_point(|&r| r >> 3 <= cpt);
        Flags(
            data::RUNS
                .get(i.wrapping_sub(1))
                .map_or(Self::OTHER, |&r| (r & 7) as u8),
        )
    }
    pub(super) fn letter(self) -> bool {
        self.0 & Self::KIND == Self::LETTER
    }
    pub(super) fn number(self) -> bool {
        self.0 & Self::KIND == Self::NUMBER
    }
    pub(super) fn whitespace(self) -> bool {
        self.0 & Self::SPACE != 0
    }
    /// `flags.as_uint() != 0`.
    pub(super) fn any(self) -> bool {
        self.0 != 0
    }
}

pub(super) const REPLACEMENT: u32 = 0xFFFD;

/// llama.cpp's `unicode_cpt_from_utf8` with the fallback of
/// `unicode_cpts_from_utf8`: the codepoint at `s[i..]` and its length; an
/// invalid sequence is U+FFFD for one byte. Like llama.cpp, overlong forms
/// and surrogates are accepted as they decode.
pub(super) fn next_cpt(s: &[u8], i: usize) -> (u32, usize) {
    let b0 = s[i] as u32;
    let cont = |k: usize| s.get(i + k).is_some_and(|&b| b & 0xc0 == 0x80);
    let c = |k: usize| (s[i + k] & 0x3f) as u32;
    if b0 & 0x80 == 0 {
        (b0, 1)
    } else if b0 & 0x40 == 0 {
        (REPLACEMENT, 1)
    } else if b0 & 0x20 == 0 {
        if cont(1) {
            ((b0 & 0x1f) << 6 | c(1), 2)
        } else {
            (REPLACEMENT, 1)
        }
    } else if b0 & 0x10 == 0 {
        if cont(1) && cont(2) {
            ((b0 & 0x0f) << 12 | c(1) << 6 | c(2), 3)
        } else {
            (REPLACEMENT, 1)
        }
    } else if b0 & 0x08 == 0 {
        if cont(1) && cont(2) && cont(3) {
            ((b0 & 0x07) << 18 | c(1) << 12 | c(2) << 6 | c(3), 4)
        } else {
            (REPLACEMENT, 1)
        }
    } else {
        (REPLACEMENT, 1)
    }
}

/// `unicode_cpt_to_utf8`; codepoints past U+10FFFF (where llama.cpp throws)
/// keep their 4-byte form. Returns the bytes and their count.
pub(super) fn cpt_to_utf8(c: u32) -> ([u8; 4], usize) {
    if c <= 0x7f {
        ([c as u8, 0, 0, 0], 1)
    } else if c <= 0x7ff {
        (
            [0xc0 | (c >> 6) as u8 & 0x1f, 0x80 | (c & 0x3f) as u8, 0, 0],
            2,
        )
    } else if c <= 0xffff {
        (
            [
                0xe0 | (c >> 12) as u8 & 0x0f,
                0x80 | (c >> 6) as u8 & 0x3f,
                0x80 | (c & 0x3f) as u8,
                0,
            ],
            3,
        )
    } else {
        (
            [
                0xf0 | (c >> 18) as u8 & 0x07,
                0x80 | (c >> 12) as u8 & 0x3f,
                0x80 | (c >> 6) as u8 & 0x3f,
                0x80 | (c & 0x3f) as u8,
            ],
            4,
        )
    }
}

/// GPT-2's `bytes_to_unicode`: the printable codepoint standing for a byte.
pub(super) fn byte_to_cpt(b: u8) -> u32 {
    match b {
        0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff => b as u32,
        // The others, in byte order, get 256, 257, ...
        0x00..=0x20 => 256 + b as u32,
        0x7f..=0xa0 => 256 + 33 + (b - 0x7f) as u32,
        0xad => 256 + 33 + 34,
    }
}

/// The inverse of [`byte_to_cpt`].
pub(super) fn cpt_to_byte(c: u32) -> Option<u8> {
    match c {
        0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff => Some(c as u8),
        256..=288 => Some((c - 256) as u8),
        289..=322 => Some((c - 289 + 0x7f) as u8),
        323 => Some(0xad),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection() {
        let mut seen = [false; 324];
        for b in 0..=255u8 {
            let c = byte_to_cpt(b);
            assert!(c < 324 && !seen[c as usize]);
            seen[c as usize] = true;
            assert_eq!(cpt_to_byte(c), Some(b));
        }
        assert_eq!(byte_to_cpt(b' '), 0x120); // 'Ġ'
        assert_eq!(byte_to_cpt(b'\n'), 0x10a); // 'Ċ'
    }

    #[test]
    fn classes() {
        assert!(Flags::of('a' as u32).letter());
        assert!(Flags::of('é' as u32).letter());
        assert!(Flags::of('中' as u32).letter());
        assert!(Flags::of('7' as u32).number());
        assert!(Flags::of('٣' as u32).number());
        assert!(Flags::of(' ' as u32).whitespace());
        assert!(Flags::of(0x3000).whitespace());
        assert!(!Flags::of('!' as u32).letter() && Flags::of('!' as u32).any());
        assert!(Flags::of(0).any());
    }
}
