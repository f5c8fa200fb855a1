//! Token sampling: llama.cpp's default sampler chain (penalties, top-k,
//! top-p, min-p, temperature, then a draw from the softmax), step for step,
//! with its RNG (std::mt19937 feeding libstdc++'s
//! `uniform_real_distribution<double>`), so a seed picks the same tokens as
//! llama.cpp's chain given the same logits. Two known differences: exactly
//! equal logits are ordered by id (std::partial_sort leaves their order
//! unspecified), and NaN/infinite logits give defined results here.
//!
//! Everything is allocated in [`Sampler::new`]; sampling only borrows it.

use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

use crate::fallible;

/// Sampling parameters; `Default` is llama.cpp's `common_params_sampling`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerParams {
    /// <= 0: greedy (the highest logit, lowest id on ties).
    pub temperature: f32,
    /// <= 0: off.
    pub top_k: i32,
    /// >= 1: off.
    pub top_p: f32,
    /// <= 0: off.
    pub min_p: f32,
    /// Top-p and min-p keep at least this many candidates.
    pub min_keep: usize,
    /// 1: off. A logit > 0 is divided by it, one <= 0 multiplied.
    pub repeat_penalty: f32,
    /// 0: off. Subtracted once per occurrence.
    pub frequency_penalty: f32,
    /// 0: off. Subtracted once if the token occurs.
    pub presence_penalty: f32,
    /// How many of the most recent tokens the penalties look at (0: off).
    pub penalty_last_n: usize,
    pub seed: u32,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            min_keep: 0,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerParams {
    /// Argmax, no penalties.
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            penalty_last_n: 0,
            ..Self::default()
        }
    }

    /// Every parameter against its [`Param::range`] (NaN and infinities
    /// fail); the first one out of range is the error. The sampler calls it,
    /// and so should every parser of user input (`llamux` flags,
    /// /proc/llamux/params) to refuse a bad value when it is given.
    pub fn validate(&self) -> Result<(), ParamError> {
        Param::Temperature.check(self.temperature as f64)?;
        Param::TopK.check(self.top_k as f64)?;
        Param::TopP.check(self.top_p as f64)?;
        Param::MinP.check(self.min_p as f64)?;
        Param::MinKeep.check(self.min_keep as f64)?;
        Param::RepeatPenalty.check(self.repeat_penalty as f64)?;
        Param::FrequencyPenalty.check(self.frequency_penalty as f64)?;
        Param::PresencePenalty.check(self.presence_penalty as f64)?;
        Param::PenaltyLastN.check(self.penalty_last_n as f64)
    }
}

/// A sampling parameter, by the name /proc/llamux/params gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    Temperature,
    TopK,
    TopP,
    MinP,
    MinKeep,
    RepeatPenalty,
    FrequencyPenalty,
    PresencePenalty,
    PenaltyLastN,
}

/// Where a parameter's valid values lie: `lo..=hi`, or `lo < x <= hi`
/// when `lo_open`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamRange {
    pub lo: f64,
    pub hi: f64,
    pub lo_open: bool,
}

impl ParamRange {
    pub fn contains(&self, x: f64) -> bool {
        // NaN is in no range; infinities are beyond every bound.
        (if self.lo_open {
            x > self.lo
        } else {
            x >= self.lo
        }) && x <= self.hi
    }
}

/// Writes `x` with at most 3 decimals, without core's float formatting
/// (its panic paths would be new ones in the module's engine object).
fn write_num(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    if x.is_nan() {
        return f.write_str("NaN");
    }
    if x.is_infinite() {
        return f.write_str(if x > 0.0 { "inf" } else { "-inf" });
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let a = if x < 0.0 { -x } else { x };
    if a >= 1e15 {
        return write!(f, "{sign}1e15 or more");
    }
    let milli = libm::round(a * 1000.0) as u64;
    let (int, frac) = (milli / 1000, milli % 1000);
    if frac == 0 {
        write!(f, "{sign}{int}")
    } else if frac % 100 == 0 {
        write!(f, "{sign}{int}.{}", frac / 100)
    } else if frac % 10 == 0 {
        write!(f, "{sign}{int}.{:02}", frac / 10)
    } else {
        write!(f, "{sign}{int}.{frac:03}")
    }
}

impl fmt::Display for ParamRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.lo_open {
            "greater than "
        } else {
            "from "
        })?;
        write_num(f, self.lo)?;
        f.write_str(if self.lo_open {
            " and at most "
        } else {
            " to "
        })?;
        write_num(f, self.hi)
    }
}

/// The largest top_k and penalty window: beyond any vocabulary in use
/// (the largest are ~256k tokens), small enough for every integer type the
/// homes carry it in.
pub const MAX_TOP_K: i32 = 1 << 20;
pub const MAX_PENALTY_LAST_N: usize = 1 << 20;

impl Param {
    pub const ALL: [Param; 9] = [
        Param::Temperature,
        Param::TopK,
        Param::TopP,
        Param::MinP,
        Param::MinKeep,
        Param::RepeatPenalty,
        Param::FrequencyPenalty,
        Param::PresencePenalty,
        Param::PenaltyLastN,
    ];

    /// The key in /proc/llamux/params (and the field of [`SamplerParams`]).
    pub fn name(self) -> &'static str {
        match self {
            Param::Temperature => "temperature",
            Param::TopK => "top_k",
            Param::TopP => "top_p",
            Param::MinP => "min_p",
            Param::MinKeep => "min_keep",
            Param::RepeatPenalty => "repeat_penalty",
            Param::FrequencyPenalty => "frequency_penalty",
            Param::PresencePenalty => "presence_penalty",
            Param::PenaltyLastN => "repeat_last_n",
        }
    }

    /// The parameter a /proc/llamux/params key names ("temp" is
    /// temperature); None for keys that are not sampling ranges.
    pub fn from_name(key: &str) -> Option<Param> {
        let key = if key == "temp" { "temperature" } else { key };
        Param::ALL.into_iter().find(|p| p.name() == key)
    }

    /// The valid values: the one place both homes take them from.
    pub fn range(self) -> ParamRange {
        let r = |lo: f64, hi: f64| ParamRange {
            lo,
            hi,
            lo_open: false,
        };
        match self {
            // 0 is greedy; beyond 100 the distribution is flat to f32 anyway.
            Param::Temperature => r(0.0, 100.0),
            Param::TopK => r(0.0, MAX_TOP_K as f64),
            Param::TopP | Param::MinP => r(0.0, 1.0),
            Param::MinKeep => r(0.0, MAX_TOP_K as f64),
            // A logit is divided by it: 0 would divide by zero.
            Param::RepeatPenalty => ParamRange {
                lo: 0.0,
                hi: 100.0,
                lo_open: true,
            },
            Param::FrequencyPenalty | Param::PresencePenalty => r(-100.0, 100.0),
            Param::PenaltyLastN => r(0.0, MAX_PENALTY_LAST_N as f64),
        }
    }

    /// Checks one value against [`range`](Self::range).
    pub fn check(self, value: f64) -> Result<(), ParamError> {
        if self.range().contains(value) {
            Ok(())
        } else {
            Err(ParamError { param: self, value })
        }
    }
}

/// A sampling parameter outside its range: names the parameter, the range
/// and the value given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamError {
    pub param: Param,
    pub value: f64,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} must be {} (got ",
            self.param.name(),
            self.param.range()
        )?;
        write_num(f, self.value)?;
        f.write_str(")")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ParamError {}

#[derive(Clone, Debug, PartialEq)]
pub enum SampleError {
    EmptyVocab,
    /// A parameter is NaN or out of range.
    BadParam(ParamError),
    /// More vocabulary entries than token ids (u32) can name.
    VocabTooLarge(usize),
    OutOfMemory,
    /// `logits` does not hold one value per vocabulary entry.
    LogitsLength {
        got: usize,
        want: usize,
    },
}

impl From<ParamError> for SampleError {
    fn from(e: ParamError) -> Self {
        SampleError::BadParam(e)
    }
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleError::EmptyVocab => {
                write!(f, "sampler needs a vocabulary of at least one token")
            }
            SampleError::BadParam(e) => write!(f, "{e}"),
            SampleError::VocabTooLarge(n) => write!(f, "vocabulary of {n} tokens is too large"),
            SampleError::OutOfMemory => write!(f, "out of memory for the sampler"),
            SampleError::LogitsLength { got, want } => {
                write!(f, "{got} logits for a vocabulary of {want}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SampleError {}

/// A token still in the running, with its probability once computed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
    pub p: f32,
}

/// std::mt19937 (32-bit Mersenne Twister), as llama.cpp seeds and uses it.
#[derive(Clone)]
pub struct Mt19937 {
    /// 624 words on the heap: kept off the stack, which is 16 KiB in the
    /// kernel and held this struct several times while a session was built.
    mt: Vec<u32>,
    i: usize,
}

impl Mt19937 {
    /// Panics only if the 2.5 KiB state cannot be allocated (user space);
    /// the engine uses [`Mt19937::try_new`].
    pub fn new(seed: u32) -> Self {
        Self::try_new(seed).expect("out of memory")
    }

    pub fn try_new(seed: u32) -> Option<Self> {
        let mt = fallible::zeroed(624).ok()?;
        let mut r = Mt19937 { mt, i: 624 };
        r.seed(seed);
        Some(r)
    }

    /// Restarts from `seed` without allocating.
    pub fn seed(&mut self, seed: u32) {
        let mt = &mut self.mt;
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        self.i = 624;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.i >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7fff_ffff);
                let mag = if y & 1 != 0 { 0x9908_b0df } else { 0 };
                self.mt[k] = self.mt[(k + 397) % 624] ^ (y >> 1) ^ mag;
            }
            self.i = 0;
        }
        let mut y = self.mt[self.i];
        self.i += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// libstdc++'s `uniform_real_distribution<double>(0, 1)`:
    /// `generate_canonical<double, 53>` from two 32-bit draws, in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        const R: f64 = 4_294_967_296.0;
        let lo = self.next_u32() as f64;
        let hi = self.next_u32() as f64;
        let r = (lo + hi * R) / (R * R);
        if r >= 1.0 {
            1.0 - f64::EPSILON / 2.0 // nextafter(1.0, 0.0)
        } else {
            r
        }
    }
}

/// The highest logit, the lowest id among equals (llama.cpp's greedy);
/// NaN never wins. None for an empty slice.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        let l = sanitize(l);
        match best {
            Some((_, b)) if l <= b => {}
            _ => best = Some((i, l)),
        }
    }
    best.map(|(i, _)| i as u32)
}

/// NaN would poison sorting and sums: it ranks below everything.
fn sanitize(l: f32) -> f32 {
    if l.is_nan() {
        f32::NEG_INFINITY
    } else {
        l
    }
}

/// Descending logit, ascending id: a total order (no NaN), so the sorted
/// order is the one llama.cpp gets whenever logits differ.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit
        .partial_cmp(&a.logit)
        .unwrap_or(Ordering::Equal)
        .then(a.id.cmp(&b.id))
}

/// `expf(l - max)`, 1 for `l == max` even when both are infinite.
fn rel_exp(l: f32, max: f32) -> f32 {
    if l == max {
        1.0
    } else {
        libm::expf(l - max)
    }
}

pub struct Sampler {
    params: SamplerParams,
    /// One slot per vocabulary entry; the first `size` are in the running.
    cand: Vec<Candidate>,
    size: usize,
    sorted: bool,
    /// Occurrences in the penalty window; all zero between calls.
    counts: Vec<u32>,
    rng: Mt19937,
}

impl Sampler {
    pub fn new(params: SamplerParams, n_vocab: usize) -> Result<Self, SampleError> {
        if n_vocab == 0 {
            return Err(SampleError::EmptyVocab);
        }
        if n_vocab > u32::MAX as usize {
            return Err(SampleError::VocabTooLarge(n_vocab));
        }
        params.validate()?;
        let cand = fallible::zeroed::<Candidate>(n_vocab)?;
        let counts = fallible::zeroed::<u32>(n_vocab)?;
        let rng = Mt19937::try_new(params.seed).ok_or(SampleError::OutOfMemory)?;
        Ok(Sampler {
            params,
            cand,
            size: 0,
            sorted: false,
            counts,
            rng,
        })
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    pub fn n_vocab(&self) -> usize {
        self.cand.len()
    }

    /// Restarts the random sequence from `seed`.
    pub fn reseed(&mut self, seed: u32) {
        self.params.seed = seed;
        self.rng.seed(seed);
    }

    /// New parameters for the next request, without allocating; the random
    /// sequence restarts from the new seed.
    pub fn set_params(&mut self, params: SamplerParams) -> Result<(), SampleError> {
        params.validate()?;
        self.params = params;
        self.rng.seed(params.seed);
        Ok(())
    }

    /// What survived the filters of the last `sample`, with probabilities.
    pub fn candidates(&self) -> &[Candidate] {
        &self.cand[..self.size]
    }

    /// Picks the next token from `logits` (one per vocabulary entry);
    /// `recent` is the token history, whose last `penalty_last_n` entries
    /// are penalised (ids out of range are ignored).
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> Result<u32, SampleError> {
        let n = self.cand.len();
        if logits.len() != n {
            return Err(SampleError::LogitsLength {
                got: logits.len(),
                want: n,
            });
        }
        for (i, (c, &l)) in self.cand.iter_mut().zip(logits).enumerate() {
            *c = Candidate {
                id: i as u32,
                logit: sanitize(l),
                p: 0.0,
            };
        }
        self.size = n;
        self.sorted = false;

        let p = self.params;
        self.penalties(recent);
        if p.top_k > 0 {
            self.top_k(p.top_k as usize);
        }
        if p.top_p < 1.0 {
            self.top_p(p.top_p, p.min_keep);
        }
        if p.min_p > 0.0 {
            self.min_p(p.min_p, p.min_keep);
        }
        self.temperature(p.temperature);
        Ok(self.dist())
    }

    /// llama.cpp's `penalties` sampler over the last `penalty_last_n` tokens.
    fn penalties(&mut self, recent: &[u32]) {
        let p = self.params;
        if p.penalty_last_n == 0
            || (p.repeat_penalty == 1.0 && p.frequency_penalty == 0.0 && p.presence_penalty == 0.0)
        {
            return;
        }
        let window = &recent[recent.len().saturating_sub(p.penalty_last_n)..];
        let n = self.counts.len();
        for &t in window {
            if (t as usize) < n {
                self.counts[t as usize] += 1;
            }
        }
        // Candidates are still in id order here.
        for &t in window {
            let t = t as usize;
            if t >= n || self.counts[t] == 0 {
                continue;
            }
            let count = self.counts[t];
            self.counts[t] = 0;
            let c = &mut self.cand[t];
            if c.logit <= 0.0 {
                c.logit *= p.repeat_penalty;
            } else {
                c.logit /= p.repeat_penalty;
            }
            c.logit -= count as f32 * p.frequency_penalty + p.presence_penalty;
        }
        self.sorted = false;
    }

    /// Sorts the best `k` candidates to the front.
    fn sort_top(&mut self, k: usize) {
        let c = &mut self.cand[..self.size];
        let k = k.min(c.len());
        if k == 0 {
            return;
        }
        if k < c.len() {
            c.select_nth_unstable_by(k - 1, by_logit_desc);
        }
        c[..k].sort_unstable_by(by_logit_desc);
    }

    fn top_k(&mut self, k: usize) {
        let k = k.min(self.size);
        if !self.sorted {
            self.sort_top(k);
        }
        self.size = k;
        self.sorted = true;
    }

    /// llama.cpp's `llama_sampler_softmax_impl(cur_p, false)`: probabilities
    /// summed in the current order.
    fn softmax(&mut self) {
        let c = &mut self.cand[..self.size];
        let Some(first) = c.first() else { return };
        let max = if self.sorted {
            first.logit
        } else {
            c.iter().fold(first.logit, |m, x| m.max(x.logit))
        };
        let mut sum = 0.0f32;
        for x in c.iter_mut() {
            x.p = rel_exp(x.logit, max);
            sum += x.p;
        }
        for x in c.iter_mut() {
            x.p /= sum;
        }
    }

    fn top_p(&mut self, top_p: f32, min_keep: usize) {
        if self.size == 0 {
            return;
        }
        self.softmax();
        // Like llama.cpp, sort only the head of a large unsorted list and
        // the rest if the head does not reach top_p.
        let mut k = self.size;
        if !self.sorted {
            k = if self.size > 1024 { 256 } else { self.size };
            self.sort_top(k);
        }
        let mut cum = 0.0f32;
        let mut last = self.size;
        for i in 0..self.size {
            cum += self.cand[i].p;
            if cum >= top_p && i + 1 >= min_keep {
                last = i + 1;
                break;
            }
            if i + 1 == k && k < self.size {
                // Everything past k ranks below it already.
                self.cand[k..self.size].sort_unstable_by(by_logit_desc);
                k = self.size;
            }
        }
        self.size = last;
        self.sorted = true;
    }

    fn min_p(&mut self, min_p: f32, min_keep: usize) {
        if self.size == 0 {
            return;
        }
        let log_p = libm::logf(min_p);
        if !self.sorted {
            // Filter in place, keeping the order, if enough survive.
            let c = &self.cand[..self.size];
            let max = c.iter().fold(-f32::MAX, |m, x| m.max(x.logit));
            let min_logit = max + log_p;
            let kept = c.iter().filter(|x| x.logit >= min_logit).count();
            if kept > 0 && kept >= min_keep {
                let mut j = 0;
                for i in 0..self.size {
                    if self.cand[i].logit >= min_logit {
                        self.cand[j] = self.cand[i];
                        j += 1;
                    }
                }
                self.size = j;
                return;
            }
            self.sort_top(self.size);
            self.sorted = true;
        }
        let min_logit = self.cand[0].logit + log_p;
        let mut i = 1;
        while i < self.size {
            if self.cand[i].logit < min_logit && i >= min_keep {
                break;
            }
            i += 1;
        }
        self.size = i;
    }

    fn temperature(&mut self, temp: f32) {
        let c = &mut self.cand[..self.size];
        if c.is_empty() {
            return;
        }
        if temp <= 0.0 {
            // Keep the first highest logit, drop the rest.
            let mut max_i = 0;
            for i in 1..c.len() {
                if c[i].logit > c[max_i].logit {
                    c[max_i].logit = f32::NEG_INFINITY;
                    max_i = i;
                } else {
                    c[i].logit = f32::NEG_INFINITY;
                }
            }
            return;
        }
        for x in c.iter_mut() {
            x.logit /= temp;
        }
    }

    /// llama.cpp's `dist` sampler: one uniform draw per call, walking the
    /// unnormalised probabilities in the current order.
    fn dist(&mut self) -> u32 {
        let c = &mut self.cand[..self.size];
        if c.is_empty() {
            return 0; // unreachable: every filter keeps one candidate
        }
        if c.len() == 1 {
            self.rng.next_f64(); // llama.cpp draws here too
            c[0].p = 1.0;
            return c[0].id;
        }
        let max = if self.sorted {
            c[0].logit
        } else {
            c.iter().fold(c[0].logit, |m, x| m.max(x.logit))
        };
        let rnd = self.rng.next_f64();
        if max == f32::NEG_INFINITY {
            // Nothing is possible; llama.cpp computes NaNs here.
            return c[0].id;
        }
        let mut sum = 0.0f64;
        for x in c.iter_mut() {
            x.p = rel_exp(x.logit, max);
            sum += x.p as f64;
        }
        let target = sum * rnd;
        let mut run = 0.0f64;
        let mut selected = None;
        for (i, x) in c.iter_mut().enumerate() {
            if selected.is_none() {
                run += x.p as f64;
                if run >= target {
                    selected = Some(i);
                }
            }
            x.p = (x.p as f64 / sum) as f32;
        }
        c[selected.unwrap_or(c.len() - 1)].id
    }
}
