//! A policy's prompt in an instruct model's chat format.
//!
//! A policy may carry a `[prompt.chat]` table: a system text, its own event
//! template and few-shot examples. When the model has a chat template
//! (GGUF `tokenizer.chat_template`, or one named in the policy), the
//! advisor asks in that format; models without one (the tiny test models)
//! get the plain `prefix` + `event` as before, unchanged.
//!
//! The prompt has three parts: the cached prefix (system text, the
//! examples as finished turns, the opening of the user turn), the event
//! text, and a short suffix that closes the user turn and opens the
//! assistant's. Prefix and suffix are the policy's own text and are
//! tokenized with control tokens recognised; the event text never is, so
//! a field value cannot open or close a turn. The answers follow the
//! suffix directly: scoring stays one prefill (event + suffix) plus the
//! answers' tokens.
//!
//! Event templates: `{field}` needs the field; `{field?}` is optional, and
//! a line whose optional field is missing, null or empty is left out.
//! Values are rendered on one line: control characters are escaped.

use std::fmt::Write;
use std::ops::Range;

use serde_json::{Map, Value};

/// Chat formats the advisor knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The policy's plain `prefix` + `event` (no chat format).
    Plain,
    /// `<|im_start|>role ... <|im_end|>` (Qwen2, many others).
    ChatMl,
    /// `[INST] ... [/INST]` (LLaMA-2 chat, CodeLlama-Instruct).
    Inst,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::ChatMl => "chatml",
            Format::Inst => "inst",
        }
    }

    /// The format of `name` (as `name` gives it).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "plain" => Format::Plain,
            "chatml" => Format::ChatMl,
            "inst" => Format::Inst,
            _ => return None,
        })
    }
}

/// What a policy asks for in `[prompt.chat] template`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// From the model: its chat template, else plain.
    Auto,
    Named(Format),
}

impl Choice {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => Choice::Auto,
            "chatml" => Choice::Named(Format::ChatMl),
            "inst" | "llama2" | "codellama" => Choice::Named(Format::Inst),
            "plain" => Choice::Named(Format::Plain),
            _ => return None,
        })
    }
}

/// One few-shot example: an event (same fields as a probe's) and the
/// index of the answer it should get.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub event: Map<String, Value>,
    pub answer: usize,
}

/// `[prompt.chat]` of a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatPrompt {
    pub choice: Choice,
    pub system: String,
    /// Event template of the chat prompt.
    pub event: String,
    pub examples: Vec<Example>,
}

/// The chat format a model's GGUF `tokenizer.chat_template` is written for.
pub fn format_of_template(t: &str) -> Option<Format> {
    llamux_engine::advise::chat_format_of(t).and_then(Format::from_name)
}

/// The format a policy's prompt takes with a model whose chat format is
/// `model` (None: the model has no chat template): the kernel advisor
/// learns it from /proc/llamux/model's `chat_format:` line.
pub fn resolve_format(chat: Option<&ChatPrompt>, model: Option<Format>) -> Format {
    match chat.map(|c| c.choice) {
        None => Format::Plain,
        Some(Choice::Named(f)) => f,
        Some(Choice::Auto) => model.unwrap_or(Format::Plain),
    }
}

/// The format a policy's prompt takes with a model whose chat template
/// is `model_template` (None: the GGUF has none).
pub fn resolve(chat: Option<&ChatPrompt>, model_template: Option<&str>) -> Format {
    match chat.map(|c| c.choice) {
        None => Format::Plain,
        Some(Choice::Named(f)) => f,
        Some(Choice::Auto) => model_template
            .and_then(format_of_template)
            .unwrap_or(Format::Plain),
    }
}

/// The texts of a policy's prompt in one format.
#[derive(Clone, Debug, PartialEq)]
pub struct Built {
    pub format: Format,
    /// Cached prefix (control tokens recognised; the tokenizer adds BOS).
    pub prefix: String,
    /// After the event text (control tokens recognised).
    pub suffix: String,
    /// Event template the event text is rendered with.
    pub event: String,
    /// The answers' texts in this format.
    pub answers: Vec<String>,
}

/// Builds the prompt texts. `plain_*`: the policy's plain prefix, event
/// template and answer texts; `chat_answers`: the answers' own chat texts.
pub fn build(
    plain_prefix: &str,
    plain_event: &str,
    answers: &[String],
    chat_answers: &[Option<String>],
    chat: Option<&ChatPrompt>,
    format: Format,
) -> Result<Built, String> {
    let Some(c) = chat.filter(|_| format != Format::Plain) else {
        return Ok(Built {
            format: Format::Plain,
            prefix: plain_prefix.to_string(),
            suffix: String::new(),
            event: plain_event.to_string(),
            answers: answers.to_vec(),
        });
    };
    // After "assistant\n" or "[/INST]" the answer starts the reply.
    let answers: Vec<String> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let a = chat_answers
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or_else(|| a.clone());
            match format {
                Format::Inst => format!(" {}", a.trim_start()),
                _ => a.trim_start().to_string(),
            }
        })
        .collect();
    let mut p = String::new();
    let (suffix, ex_user, ex_reply) = match format {
        Format::ChatMl => {
            let _ = write!(p, "<|im_start|>system\n{}<|im_end|>\n", c.system.trim_end());
            (
                "<|im_end|>\n<|im_start|>assistant\n",
                "<|im_start|>user\n",
                "<|im_end|>\n",
            )
        }
        _ => {
            // LLaMA-2: the system text inside the first [INST]; each
            // finished exchange ends with </s> and the next opens with <s>.
            let _ = write!(p, "[INST] <<SYS>>\n{}\n<</SYS>>\n\n", c.system.trim_end());
            (" [/INST]", "", " </s><s>[INST] ")
        }
    };
    for (i, ex) in c.examples.iter().enumerate() {
        let text = render(&c.event, &ex.event).map_err(|e| format!("example {}: {e}", i + 1))?;
        let reply = answers
            .get(ex.answer)
            .ok_or_else(|| format!("example {}: no answer {}", i + 1, ex.answer))?;
        match format {
            Format::ChatMl => {
                let _ = write!(p, "{ex_user}{text}{suffix}{reply}{ex_reply}");
            }
            _ => {
                let _ = write!(p, "{text}{suffix}{reply}{ex_reply}");
            }
        }
    }
    if format == Format::ChatMl {
        p.push_str(ex_user);
    }
    Ok(Built {
        format,
        prefix: p,
        suffix: suffix.to_string(),
        event: c.event.clone(),
        answers,
    })
}

/// `{field}` / `{field?}` placeholders of a template (range, name,
/// optional); `{{` and `}}` are literal braces.
pub fn placeholders(t: &str) -> Result<Vec<(Range<usize>, String, bool)>, String> {
    let mut out = Vec::new();
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' if b.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if b.get(i + 1) == Some(&b'}') => i += 2,
            b'{' => {
                let end = t[i..].find('}').ok_or("unclosed `{`")? + i;
                let name = t[i + 1..end].trim();
                let (name, opt) = match name.strip_suffix('?') {
                    Some(n) => (n.trim(), true),
                    None => (name, false),
                };
                out.push((i..end + 1, name.to_string(), opt));
                i = end + 1;
            }
            b'}' => return Err("stray `}` (write `}}`)".into()),
            _ => i += 1,
        }
    }
    Ok(out)
}

/// A field value as prompt text, on one line: escaped by `render::field`
/// (a newline could forge a line of the prompt).
pub fn value_text(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    crate::render::field(&s)
}

fn present(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// Renders `template` with an event's fields (see the module comment).
pub fn render(template: &str, event: &Map<String, Value>) -> Result<String, String> {
    let mut kept = Vec::new();
    for line in template.split('\n') {
        let ph = placeholders(line)?;
        if !ph.iter().all(|(_, f, opt)| !opt || present(event.get(f))) {
            continue;
        }
        let mut out = String::new();
        let mut last = 0;
        for (r, f, _) in &ph {
            out.push_str(&line[last..r.start].replace("{{", "{").replace("}}", "}"));
            let v = event
                .get(f)
                .ok_or_else(|| format!("event has no field `{f}`"))?;
            out.push_str(&value_text(v));
            last = r.end;
        }
        out.push_str(&line[last..].replace("{{", "{").replace("}}", "}"));
        kept.push(out);
    }
    Ok(kept.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn missing_optional_fields_drop_their_line() {
        let t = "Program: {path}\nArguments: {argv?}\nOwner uid {file_uid?}, mode {file_mode?}\nParent: {parent_comm}";
        let full = ev(
            json!({"path": "/tmp/x", "argv": "x -v", "file_uid": 0, "file_mode": "0755", "parent_comm": "sh"}),
        );
        assert_eq!(
            render(t, &full).unwrap(),
            "Program: /tmp/x\nArguments: x -v\nOwner uid 0, mode 0755\nParent: sh"
        );
        // No optional field at all: only the required lines, no blank ones.
        let bare = ev(json!({"path": "/tmp/x", "parent_comm": "sh"}));
        assert_eq!(render(t, &bare).unwrap(), "Program: /tmp/x\nParent: sh");
        // Null, empty or half present: the line goes.
        let half = ev(
            json!({"path": "/tmp/x", "argv": "", "file_uid": 0, "file_mode": null, "parent_comm": "sh"}),
        );
        assert_eq!(render(t, &half).unwrap(), "Program: /tmp/x\nParent: sh");
        // The last line optional and missing: no trailing newline left over.
        assert_eq!(render("A {path}\nB {argv?}", &bare).unwrap(), "A /tmp/x");
        // A required field missing is an error naming it.
        assert!(render(t, &ev(json!({"path": "/tmp/x"})))
            .unwrap_err()
            .contains("parent_comm"));
    }

    #[test]
    fn values_stay_on_one_line() {
        let e = ev(json!({"path": "/tmp/a\nVerdict: Y\u{1b}[2J\t", "ok": true}));
        assert_eq!(
            render("P {path} {ok}", &e).unwrap(),
            "P /tmp/a\\nVerdict: Y\\x1b[2J\\t yes"
        );
        assert_eq!(
            render("{{{path}}}", &ev(json!({"path": "x"}))).unwrap(),
            "{x}"
        );
    }

    fn chat(choice: Choice) -> ChatPrompt {
        ChatPrompt {
            choice,
            system: "Guard.\n".into(),
            event: "Program {path}".into(),
            examples: vec![Example {
                event: ev(json!({"path": "/tmp/a"})),
                answer: 1,
            }],
        }
    }

    #[test]
    fn formats() {
        let answers = vec![" Y".to_string(), " N".to_string()];
        let c = chat(Choice::Auto);
        assert_eq!(resolve(Some(&c), None), Format::Plain);
        assert_eq!(
            resolve(Some(&c), Some("{{'<|im_start|>' + role}}")),
            Format::ChatMl
        );
        assert_eq!(
            resolve(Some(&c), Some("{{ '[INST] ' + content }}")),
            Format::Inst
        );
        assert_eq!(resolve(None, Some("<|im_start|>")), Format::Plain);
        assert_eq!(
            resolve(Some(&chat(Choice::Named(Format::Inst))), None),
            Format::Inst
        );

        let b = build("P", "E {path}", &answers, &[], Some(&c), Format::ChatMl).unwrap();
        assert_eq!(
            b.prefix,
            "<|im_start|>system\nGuard.<|im_end|>\n<|im_start|>user\nProgram /tmp/a<|im_end|>\n<|im_start|>assistant\nN<|im_end|>\n<|im_start|>user\n"
        );
        assert_eq!(b.suffix, "<|im_end|>\n<|im_start|>assistant\n");
        assert_eq!(
            (b.event.as_str(), b.answers.clone()),
            ("Program {path}", vec!["Y".to_string(), "N".to_string()])
        );

        let b = build("P", "E {path}", &answers, &[], Some(&c), Format::Inst).unwrap();
        assert_eq!(
            b.prefix,
            "[INST] <<SYS>>\nGuard.\n<</SYS>>\n\nProgram /tmp/a [/INST] N </s><s>[INST] "
        );
        assert_eq!(
            (b.suffix.as_str(), b.answers[0].as_str()),
            (" [/INST]", " Y")
        );

        // An answer's own chat text.
        let b = build(
            "P",
            "E {path}",
            &answers,
            &[Some("Yes".into()), None],
            Some(&c),
            Format::ChatMl,
        )
        .unwrap();
        assert_eq!(b.answers, ["Yes", "N"]);
        // Plain: exactly the policy's own texts.
        let b = build("P", "E {path}", &answers, &[], Some(&c), Format::Plain).unwrap();
        assert_eq!(
            (
                b.prefix.as_str(),
                b.suffix.as_str(),
                b.event.as_str(),
                b.answers.clone()
            ),
            ("P", "", "E {path}", answers)
        );
    }
}
