//! Commands that talk to llamux.ko through /proc/llamux.

use std::io::{Read, Write};

use serde_json::json;

use crate::engine_cmds::{format_prompt, Res, Utf8Stream};

const PROC: &str = "/proc/llamux";

fn proc_err(file: &str, e: std::io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(2) => " (is llamux.ko loaded? `insmod llamux.ko model=FILE`)",
        Some(13) => " (root only)",
        Some(16) => " (busy: one request at a time)",
        Some(19) => " (no model loaded: write a path to /proc/llamux/load)",
        Some(7) => " (prompt too long: see max_prompt in /proc/llamux/status)",
        _ => "",
    };
    format!("{PROC}/{file}: {e}{hint}")
}

/// The value of `key: value` in /proc/llamux/status.
fn status_field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

/// Writes PROMPT to /proc/llamux/generate and streams the completion.
pub fn query(prompt: &str, params: Option<&str>, instruct: bool, json_out: bool) -> Res {
    if let Some(p) = params {
        std::fs::write(format!("{PROC}/params"), p).map_err(|e| proc_err("params", e))?;
    }
    let arch = std::fs::read_to_string(format!("{PROC}/model")).ok().and_then(|m| status_field(&m, "arch"));
    let mut text = format_prompt(arch.as_deref().unwrap_or("llama"), prompt, instruct);
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
    f.write_all(text.as_bytes()).map_err(|e| proc_err("generate", e))?;
    let mut out = std::io::stdout().lock();
    let mut utf8 = Utf8Stream::default();
    let mut all = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = f.read(&mut buf).map_err(|e| proc_err("generate", e))?;
        if n == 0 {
            break;
        }
        let piece = utf8.push(&buf[..n]);
        if !json_out {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
        all.push_str(&piece);
    }
    all.push_str(&utf8.finish());
    let status = std::fs::read_to_string(format!("{PROC}/status")).map_err(|e| proc_err("status", e))?;
    let field = |k: &str| status_field(&status, k).unwrap_or_default();
    if json_out {
        let ids: Vec<u32> = field("last_ids").split_whitespace().filter_map(|t| t.parse().ok()).collect();
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
        let _ = writeln!(out);
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
