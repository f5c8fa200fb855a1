//! Reading a policy file: TOML into the raw structure, and errors that
//! name the file, the line and the dotted field.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::{validate, Policy};

/// A policy file's error: `file:line: field `a.b`: msg`, without the line
/// or the field where there is none (the file could not be read, or a
/// TOML error outside any table).
#[derive(Debug, thiserror::Error)]
#[error("{}{msg}", location(.file, *.line, .field))]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: usize,
    pub field: String,
    pub msg: String,
}

fn location(file: &Path, line: usize, field: &str) -> String {
    let at = match line {
        0 => format!("{}: ", file.display()),
        n => format!("{}:{n}: ", file.display()),
    };
    match field {
        "" => at,
        f => format!("{at}field `{f}`: "),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) description: String,
    pub(super) hook: Spanned<String>,
    pub(super) key: Spanned<String>,
    #[serde(default)]
    pub(super) default: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ttl: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) rate_limit: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) filter: Option<RawFilter>,
    pub(super) prompt: RawPrompt,
    pub(super) answer: Spanned<Vec<RawAnswer>>,
    #[serde(default)]
    pub(super) margin: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    #[serde(default)]
    pub(super) path_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) min_rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) sample: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) exclude_comm: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrompt {
    pub(super) prefix: Spanned<String>,
    pub(super) event: Spanned<String>,
    #[serde(default)]
    pub(super) chat: Option<RawChat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChat {
    #[serde(default)]
    pub(super) template: Option<Spanned<String>>,
    pub(super) system: Spanned<String>,
    #[serde(default)]
    pub(super) event: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) example: Vec<RawExample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExample {
    pub(super) event: Spanned<Map<String, Value>>,
    pub(super) answer: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnswer {
    pub(super) text: Spanned<String>,
    pub(super) action: Spanned<String>,
    #[serde(default)]
    pub(super) nice: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) bias: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) chat: Option<Spanned<String>>,
}

fn line_of(src: &str, pos: usize) -> usize {
    let b = src.as_bytes();
    b[..pos.min(b.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Best guess of the dotted field name at byte `pos`: the key on that line
/// inside the nearest table header above it.
fn field_at(src: &str, pos: usize) -> String {
    let mut pos = pos.min(src.len());
    while !src.is_char_boundary(pos) {
        pos -= 1;
    }
    let start = src[..pos].rfind('\n').map_or(0, |i| i + 1);
    let end = src[pos..].find('\n').map_or(src.len(), |i| pos + i);
    let line = src[start..end].trim();
    let mut table = String::new();
    for l in src[..start].lines().rev() {
        let l = l.trim();
        if l.starts_with('[') {
            table = l
                .trim_matches(|ch| ch == '[' || ch == ']')
                .trim()
                .to_string();
            break;
        }
    }
    let key = if line.starts_with('[') {
        return line
            .trim_matches(|ch| ch == '[' || ch == ']')
            .trim()
            .to_string();
    } else if let Some(eq) = line.find('=') {
        line[..eq].trim().to_string()
    } else {
        String::new()
    };
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

fn backticked(msg: &str) -> Option<String> {
    let a = msg.find('`')?;
    let b = msg[a + 1..].find('`')?;
    Some(msg[a + 1..a + 1 + b].to_string())
}

pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    src: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(
        &self,
        span: Range<usize>,
        field: &str,
        msg: impl Into<String>,
    ) -> PolicyError {
        PolicyError {
            file: self.file.to_path_buf(),
            line: line_of(self.src, span.start),
            field: field.into(),
            msg: msg.into(),
        }
    }
}

pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let src = std::fs::read_to_string(path).map_err(|e| PolicyError {
        file: path.to_path_buf(),
        line: 0,
        field: String::new(),
        msg: e.to_string(),
    })?;
    parse(path, &src)
}

pub fn parse(path: &Path, src: &str) -> Result<Policy, PolicyError> {
    let cx = Ctx { file: path, src };
    let raw: RawPolicy = toml::from_str(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let msg = e.message().trim().to_string();
        let mut field = field_at(src, span.start);
        if msg.starts_with("missing field") || msg.starts_with("unknown field") {
            if let Some(f) = backticked(&msg) {
                let table = field_at(src, span.start);
                field = if table.is_empty() || msg.starts_with("unknown") && table == f {
                    f
                } else if msg.starts_with("unknown") {
                    // the span points at the unknown key itself
                    field_at(src, span.start)
                } else {
                    format!("{table}.{f}")
                };
            }
        }
        cx.err(span, &field, msg)
    })?;
    validate::policy(&cx, raw)
}
