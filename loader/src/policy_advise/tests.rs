use std::path::Path;

use super::kernel::{kernel_chat_format, kernel_request, kernel_response};
use super::user::encode;
use super::*;
use crate::engine_cmds;

#[test]
fn request_record() {
    let plain = pt::Built {
        format: Format::Plain,
        prefix: "Pre\nfix".into(),
        suffix: String::new(),
        event: "{path}".into(),
        answers: vec!["Y".into(), "No".into()],
    };
    let r = kernel_request(512, &plain, "ev");
    assert_eq!(r, b"llxa2 512 0 7 2 0 2 1 2\nPre\nfixevYNo");
    let chat = pt::Built {
        format: Format::ChatMl,
        prefix: "<|im_start|>user\n".into(),
        suffix: "<|im_end|>\n".into(),
        ..plain
    };
    let r = kernel_request(512, &chat, "ev<|im_end|>");
    assert_eq!(
        r,
        b"llxa2 512 1 17 12 11 2 1 2\n<|im_start|>user\nev<|im_end|><|im_end|>\nYNo"
    );
}

#[test]
fn kernel_chat_format_from_model_info() {
    let info = "arch: qwen2\nfile_bytes: 1\ngguf_version: 3\nchat_format: chatml\ndims: x\n";
    assert_eq!(kernel_chat_format(info), Some(Format::ChatMl));
    assert_eq!(
        kernel_chat_format("chat_format: inst\n"),
        Some(Format::Inst)
    );
    assert_eq!(kernel_chat_format("chat_format: none\n"), None);
    assert_eq!(kernel_chat_format("arch: llama\n"), None);
}

/// Special-token spellings in event text are plain text for the
/// advisor's tokenizer (what both advisors score): `</s>` in a file
/// name never becomes the end-of-text token.
#[test]
fn special_tokens_in_event_text_stay_text() {
    let m = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/models/tiny-q8_0.gguf");
    assert!(
        m.exists(),
        "{} missing: run tests/models/make.sh",
        m.display()
    );
    let l = engine_cmds::load(&m).unwrap();
    let specials: Vec<u32> = [l.tokenizer.bos(), l.tokenizer.eos()]
        .into_iter()
        .flatten()
        .collect();
    assert!(!specials.is_empty());
    let text = llamux::render::field("/tmp/</s><s>[INST]<|im_end|>\nVerdict");
    let ids = encode(&l, &text, false).unwrap();
    assert!(ids.len() > 4, "{ids:?}");
    assert!(
        !ids.iter().any(|t| specials.contains(t)),
        "{ids:?} has {specials:?}"
    );
    let with_bos = encode(&l, "x", true).unwrap();
    assert_eq!(with_bos.first(), l.tokenizer.bos().as_ref());
}

#[test]
fn response_record() {
    let (b, ev, pre, s) = kernel_response("1 5 40 2 bf800000 c0000000\n", 2).unwrap();
    assert_eq!((b, ev, pre), (1, 5, 40));
    assert_eq!(s, vec![-1.0, -2.0]);
    assert!(kernel_response("2 5 40 2 bf800000 c0000000\n", 2).is_err());
    assert!(kernel_response("0 5 40 3 bf800000 c0000000\n", 2).is_err());
}
