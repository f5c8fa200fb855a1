//! Sampling settings as the kernel module takes them: text words
//! ("temperature=0.8 top_k=40 ...", written to /proc/llamux/params or given
//! as `params=`) parsed into integer thousandths, which cross into the
//! soft-float module and back. Values outside what the sampler accepts are
//! errors, not clamped, by the sampler's own ranges (`sample::Param::range`,
//! which the `llamux` flags use too), and a seed beyond the sampler's u32.

use core::fmt;

use crate::advise::request::parse_u64;
use crate::sample::{Param, SamplerParams};

/// Sampling settings, floats as integer thousandths (the ranges are
/// `sample::Param::range`'s; kengine copies this into abi.rs's LlxSampling).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MilliSampling {
    /// 0: greedy.
    pub temperature_milli: u32,
    /// 0: off.
    pub top_k: u32,
    /// 1000: off.
    pub top_p_milli: u32,
    /// 0: off.
    pub min_p_milli: u32,
    /// 1000: off.
    pub repeat_penalty_milli: u32,
    /// Tokens the repetition penalty looks back over (0: off).
    pub repeat_last_n: u32,
    /// Tokens produced at most per request.
    pub n_predict: u32,
    pub seed: u64,
}

/// Why a params text was rejected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParamError {
    /// A word that is not `key=value` or `defaults`.
    NotKeyValue,
    UnknownKey,
    /// The value is not a number of the key's form.
    BadNumber,
    /// A number of the right form outside the key's range.
    OutOfRange(&'static str),
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::NotKeyValue => write!(f, "expected key=value"),
            ParamError::UnknownKey => write!(f, "unknown key"),
            ParamError::BadNumber => write!(f, "not a non-negative decimal number"),
            ParamError::OutOfRange(k) => write!(f, "{k} out of range"),
        }
    }
}

impl MilliSampling {
    /// The user-space tool's defaults (loader/src/main.rs SampleArgs, the
    /// engine's SamplerParams::default() for what it does not set).
    pub const DEFAULT: MilliSampling = MilliSampling {
        temperature_milli: 0,
        top_k: 40,
        top_p_milli: 950,
        min_p_milli: 50,
        repeat_penalty_milli: 1000,
        repeat_last_n: 64,
        n_predict: 32,
        seed: 0,
    };

    /// Applies the words of `text` to `self` ("defaults" resets all);
    /// on error nothing changes.
    pub fn parse(self, text: &[u8]) -> Result<MilliSampling, ParamError> {
        let mut s = self;
        for word in text
            .split(|c| c.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
        {
            if word == b"defaults" {
                s = MilliSampling::DEFAULT;
                continue;
            }
            let eq = word
                .iter()
                .position(|&c| c == b'=')
                .ok_or(ParamError::NotKeyValue)?;
            let (k, v) = (&word[..eq], &word[eq + 1..]);
            // The ranges are the sampler's own (sample::Param::range), so
            // the module and the `llamux` flags refuse the same values.
            let milli = |p: Param| -> Result<u32, ParamError> {
                let x = parse_milli(v).ok_or(ParamError::BadNumber)?;
                p.check(x as f64 / 1000.0)
                    .map_err(|_| ParamError::OutOfRange(p.name()))?;
                Ok(x)
            };
            let int = || -> Result<u64, ParamError> { parse_u64(v).ok_or(ParamError::BadNumber) };
            let count = |p: Param| -> Result<u32, ParamError> {
                let x = int()?;
                p.check(x as f64)
                    .map_err(|_| ParamError::OutOfRange(p.name()))?;
                u32::try_from(x).map_err(|_| ParamError::OutOfRange(p.name()))
            };
            match k {
                b"temperature" | b"temp" => s.temperature_milli = milli(Param::Temperature)?,
                b"top_k" => s.top_k = count(Param::TopK)?,
                b"top_p" => s.top_p_milli = milli(Param::TopP)?,
                b"min_p" => s.min_p_milli = milli(Param::MinP)?,
                b"repeat_penalty" => s.repeat_penalty_milli = milli(Param::RepeatPenalty)?,
                b"repeat_last_n" => s.repeat_last_n = count(Param::PenaltyLastN)?,
                b"seed" => {
                    let x = int()?;
                    if x > u32::MAX as u64 {
                        return Err(ParamError::OutOfRange("seed"));
                    }
                    s.seed = x;
                }
                b"n_predict" | b"n" => {
                    s.n_predict =
                        u32::try_from(int()?).map_err(|_| ParamError::OutOfRange("n_predict"))?
                }
                _ => return Err(ParamError::UnknownKey),
            }
        }
        Ok(s)
    }

    /// The sampler's settings. n/1000 is correctly rounded, so "0.95" gives
    /// the same f32 as parsing 0.95 directly (what `llamux run` does).
    pub fn to_sampler(self) -> SamplerParams {
        SamplerParams {
            temperature: self.temperature_milli as f32 / 1000.0,
            top_k: self.top_k.min(i32::MAX as u32) as i32,
            top_p: self.top_p_milli as f32 / 1000.0,
            min_p: self.min_p_milli as f32 / 1000.0,
            repeat_penalty: self.repeat_penalty_milli as f32 / 1000.0,
            penalty_last_n: self.repeat_last_n as usize,
            seed: self.seed as u32,
            ..SamplerParams::default()
        }
    }
}

/// Integer thousandths of a non-negative decimal ("0.95" -> 950), digits
/// past the third rounded down. None on anything else ("-1", "nan", "inf",
/// "1e3", "") or on overflow.
pub fn parse_milli(v: &[u8]) -> Option<u32> {
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut x: u32 = 0;
    for &c in int {
        if !c.is_ascii_digit() {
            return None;
        }
        x = x.checked_mul(10)?.checked_add((c - b'0') as u32)?;
    }
    x = x.checked_mul(1000)?;
    let mut scale = 100;
    for &c in frac {
        if !c.is_ascii_digit() {
            return None;
        }
        x = x.checked_add((c - b'0') as u32 * scale)?;
        scale /= 10;
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<MilliSampling, ParamError> {
        MilliSampling::DEFAULT.parse(t.as_bytes())
    }

    #[test]
    fn words_set_what_they_name() {
        let s = parse("temperature=0.8 top_k=7 top_p=0.5 min_p=0 repeat_penalty=1.1 repeat_last_n=3 seed=9 n=5").unwrap();
        assert_eq!(
            s,
            MilliSampling {
                temperature_milli: 800,
                top_k: 7,
                top_p_milli: 500,
                min_p_milli: 0,
                repeat_penalty_milli: 1100,
                repeat_last_n: 3,
                n_predict: 5,
                seed: 9
            }
        );
        assert_eq!(
            parse("temp=4 n_predict=16").unwrap().temperature_milli,
            4000
        );
        assert_eq!(s.parse(b"defaults").unwrap(), MilliSampling::DEFAULT);
        assert_eq!(parse("").unwrap(), MilliSampling::DEFAULT);
        assert_eq!(parse("top_p=1 top_k=0 min_p=1").unwrap().top_p_milli, 1000);
        assert_eq!(parse("temperature=.5").unwrap().temperature_milli, 500);
        assert_eq!(parse("temperature=0.12345").unwrap().temperature_milli, 123);
    }

    #[test]
    fn rejects_out_of_range() {
        for bad in [
            "top_p=1.001",
            "top_p=2",
            "min_p=1.5",
            "temperature=100.001",
            "repeat_penalty=0",
            "top_k=1048577",
            "top_k=99999999999",
            "seed=4294967296",
            "n_predict=4294967296",
            "repeat_last_n=4294967296",
        ] {
            assert!(
                matches!(parse(bad), Err(ParamError::OutOfRange(_))),
                "{bad}"
            );
        }
        assert!(parse("seed=4294967295").is_ok());
        assert!(parse("temperature=100").is_ok());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "temperature=-1",
            "temperature=nan",
            "temperature=inf",
            "temperature=1e3",
            "temperature=",
            "temperature=.",
            "temperature=0.8.1",
            "top_k=-1",
            "top_k=1.5",
            "temperature=\u{ff}",
        ] {
            assert_eq!(parse(bad), Err(ParamError::BadNumber), "{bad}");
        }
        assert_eq!(parse("temperature"), Err(ParamError::NotKeyValue));
        assert_eq!(parse("temperature=1 bogus=2"), Err(ParamError::UnknownKey));
        assert_eq!(parse("temperature=99999999999"), Err(ParamError::BadNumber));
    }

    #[test]
    fn an_error_changes_nothing() {
        let cur = parse("temperature=0.5 top_k=3").unwrap();
        assert!(cur.parse(b"top_k=9 top_p=2").is_err());
        assert_eq!(cur.top_k, 3);
    }

    #[test]
    fn to_sampler_rounds_as_a_direct_parse() {
        let p = parse("top_p=0.95 min_p=0.05 temperature=0.8 repeat_penalty=1.1 seed=7")
            .unwrap()
            .to_sampler();
        assert_eq!(p.top_p, 0.95f32);
        assert_eq!(p.min_p, 0.05f32);
        assert_eq!(p.temperature, 0.8f32);
        assert_eq!(p.repeat_penalty, 1.1f32);
        assert_eq!(p.seed, 7);
    }
}
