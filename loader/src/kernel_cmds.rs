//! Commands that talk to llamux.ko through /proc/llamux.

use std::io::{Read, Write};

use anyhow::{anyhow, bail};
use serde_json::json;

use llamux_engine::sample::Param;
use llamux_engine::session::instruct_template;
use llamux_engine::tokenizer::Utf8Stream;

use crate::engine_cmds::Res;

pub(crate) const PROC: &str = "/proc/llamux";

pub(crate) fn proc_err(file: &str, e: std::io::Error) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(2) => " (is llamux.ko loaded? `insmod llamux.ko model=FILE`)",
        Some(13) => " (root only)",
        Some(16) => " (busy: one request at a time)",
        Some(19) => " (no model loaded: write a path to /proc/llamux/load)",
        Some(7) => " (prompt too long: see max_prompt in /proc/llamux/status)",
        _ => "",
    };
    anyhow!("{PROC}/{file}: {e}{hint}")
}

/// The value of `key: value` in /proc/llamux/status.
pub(crate) fn status_field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')
            .map(|v| v.trim().to_string())
    })
}

/// The first text in `s` that a vocabulary may hold as a control token
/// (`<s>`, `</s>`, `<unk>`, CodeLlama's `<PRE>`..., ChatML's `<|...|>`).
pub fn special_like(s: &str) -> Option<&str> {
    const FIXED: [&str; 7] = ["<s>", "</s>", "<unk>", "<PRE>", "<SUF>", "<MID>", "<EOT>"];
    let b = s.as_bytes();
    for i in 0..b.len() {
        if let Some(f) = FIXED.iter().find(|f| b[i..].starts_with(f.as_bytes())) {
            return Some(&s[i..i + f.len()]);
        }
        if b[i..].starts_with(b"<|") {
            // `<|name|>` with a short name without spaces.
            let rest = &b[i + 2..];
            if let Some(j) = rest.windows(2).take(64).position(|w| w == b"|>") {
                if !rest[..j].iter().any(|c| c.is_ascii_whitespace()) {
                    return Some(&s[i..i + j + 4]);
                }
            }
        }
    }
    None
}

/// Checks the sampling values in a /proc/llamux/params text against the
/// engine's ranges before anything is written (the module takes the same
/// ranges from the engine, but refuses only when the next request starts).
/// Other words are left to the module to judge.
pub fn check_params(text: &str) -> anyhow::Result<()> {
    for word in text.split_whitespace() {
        let Some((k, v)) = word.split_once('=') else {
            continue;
        };
        let Some(p) = Param::from_name(k) else {
            continue;
        };
        let k = p.name();
        let x: f64 = v
            .parse()
            .map_err(|_| anyhow!("--params: {k}={v}: not a number (must be {})", p.range()))?;
        p.check(x).map_err(|e| anyhow!("--params: {e}"))?;
    }
    Ok(())
}

/// Writes PROMPT to /proc/llamux/generate and streams the completion.
///
/// The module parses special tokens everywhere in what it is given (it
/// cannot tell a template from the user's text), so a prompt holding
/// control-token text is refused unless `special` says that is meant.
pub fn query(
    prompt: &str,
    params: Option<&str>,
    instruct: bool,
    special: bool,
    json_out: bool,
) -> Res {
    if let (false, Some(t)) = (special, special_like(prompt)) {
        bail!(
            "the prompt contains {t:?}, which llama.cpp-style tokenizers (and llamux.ko) read as a control \
             token, not text; give --special to send it as such, or `llamux run` to have it read as text"
        );
    }
    if let Some(p) = params {
        check_params(p)?;
        std::fs::write(format!("{PROC}/params"), p).map_err(|e| proc_err("params", e))?;
    }
    let arch = std::fs::read_to_string(format!("{PROC}/model"))
        .ok()
        .and_then(|m| status_field(&m, "arch"));
    let mut text = if instruct {
        let (pre, post) = instruct_template(arch.as_deref().unwrap_or("llama"));
        format!("{pre}{prompt}{post}")
    } else {
        prompt.to_string()
    };
    // The module drops one trailing newline (the one `echo` adds); a prompt
    // that really ends in one (ChatML's "assistant\n") keeps it this way.
    if text.ends_with('\n') {
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("{PROC}/generate"))
        .map_err(|e| proc_err("generate", e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| proc_err("generate", e))?;
    let mut utf8 = Utf8Stream::default();
    let mut all = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = f.read(&mut buf).map_err(|e| proc_err("generate", e))?;
        if n == 0 {
            break;
        }
        let piece = utf8.push_string(&buf[..n]);
        if !json_out {
            crate::stdio::out_bytes(piece.as_bytes());
        }
        all.push_str(&piece);
    }
    all.push_str(&utf8.finish_string());
    let status =
        std::fs::read_to_string(format!("{PROC}/status")).map_err(|e| proc_err("status", e))?;
    let field = |k: &str| status_field(&status, k).unwrap_or_default();
    if json_out {
        let ids: Vec<u32> = field("last_ids")
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        let num = |k: &str| field(k).parse::<f64>().ok();
        println!(
            "{}",
            json!({
                "prompt": prompt,
                "text": all,
                "generated_tokens": ids,
                "prompt_tokens": field("last_prompt_tokens").parse::<u64>().ok(),
                "prefill_tokens_per_s": num("last_prefill_tokens_per_s"),
                "decode_tokens_per_s": num("last_decode_tokens_per_s"),
            })
        );
    } else {
        println!();
        eprintln!(
            "llamux: in-kernel: prompt {} tokens at {} tok/s, generated {} tokens at {} tok/s",
            field("last_prompt_tokens"),
            field("last_prefill_tokens_per_s"),
            field("last_generated_tokens"),
            field("last_decode_tokens_per_s")
        );
    }
    Ok(())
}
