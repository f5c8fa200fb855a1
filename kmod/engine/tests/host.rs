//! The module's host logic (llamux_engine::host), as kmod/kengine drives
//! it: loading, the info text, generation request by request with the
//! session prepared per request, and the advisor's LRU slots, limits and
//! response records.

mod common;

use llamux_engine::advise::request::encode;
use llamux_engine::advise::response::Response;
use llamux_engine::exec::Serial;
use llamux_engine::gguf::Gguf;
use llamux_engine::host::{ErrorKind, Host, HostParams};
use llamux_engine::model::ContextParams;
use llamux_engine::model::Model;
use llamux_engine::params::MilliSampling;
use llamux_engine::session::{Session, Step};
use llamux_engine::tokenizer::Tokenizer;

fn params() -> HostParams {
    HostParams {
        n_ctx: 128,
        n_batch: 32,
        kv_f16: false,
        max_prompt_bytes: 4096,
        advise_slots: 2,
        advise_max_ctx: 4096,
        repacked: false,
    }
}

fn greedy(n: u32) -> MilliSampling {
    MilliSampling::DEFAULT
        .parse(format!("temperature=0 n_predict={n}").as_bytes())
        .unwrap()
}

fn generate(h: &mut Host<'_, Serial>, prompt: &str, s: MilliSampling) -> Vec<u32> {
    let mut msg = String::new();
    h.start(prompt.as_bytes(), s, &mut msg).unwrap();
    let mut ids = Vec::new();
    while let Some(t) = h.step().unwrap() {
        ids.push(t);
    }
    ids
}

/// The same request run on a Session directly, as `llamux run` does.
fn reference(bytes: &[u8], prompt: &str, s: MilliSampling) -> Vec<u32> {
    let g = Gguf::parse(bytes).unwrap();
    let m = Model::from_gguf(&g).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let cp = ContextParams {
        n_ctx: 128,
        n_batch: 32,
        ..ContextParams::default()
    };
    let mut sess = Session::new(&m, &tok, cp, s.to_sampler(), 4096).unwrap();
    sess.start(&m, &tok, prompt.as_bytes(), &mut Serial)
        .unwrap();
    let mut ids = Vec::new();
    while ids.len() < s.n_predict as usize {
        match sess.step(&m, &tok, &mut Serial).unwrap() {
            Step::Token(t) => ids.push(t),
            Step::End => break,
        }
    }
    ids
}

#[test]
fn info_text_names_the_model_and_its_kv_cache() {
    let bytes = common::read(&common::model_path("tiny-q4_k_m.gguf"));
    let mut msg = String::new();
    let h = Host::load(&bytes, &params(), Serial, &mut msg).unwrap();
    let info = h.info();
    assert!(info.starts_with("arch: llama\n"), "{info}");
    assert!(
        info.contains(&format!("\nfile_bytes: {}\n", bytes.len())),
        "{info}"
    );
    assert!(info.contains("\nlayout: rows\n"), "{info}");
    let kv = info.lines().find(|l| l.starts_with("kv_cache: ")).unwrap();
    assert!(
        kv.starts_with("kv_cache: n_ctx=128 type=f32 bytes="),
        "{kv}"
    );
    let f16 = Host::load(
        &bytes,
        &HostParams {
            kv_f16: true,
            ..params()
        },
        Serial,
        &mut msg,
    )
    .unwrap();
    let kv16 = f16
        .info()
        .lines()
        .find(|l| l.starts_with("kv_cache: "))
        .unwrap()
        .to_string();
    let bytes_of = |l: &str| l.rsplit('=').next().unwrap().parse::<usize>().unwrap();
    assert_eq!(bytes_of(kv) / 2, bytes_of(&kv16));
}

#[test]
fn load_errors_are_values() {
    let bytes = common::read(&common::model_path("tiny-q4_k_m.gguf"));
    for (bad, want) in [
        (&bytes[..3000], "not a valid GGUF file"),
        (&b"GGUFxxxxxxxxxxxxxxxxxxxx"[..], "not a valid GGUF file"),
    ] {
        let mut msg = String::new();
        let r = Host::load(bad, &params(), Serial, &mut msg);
        assert_eq!(r.err(), Some(ErrorKind::Invalid));
        assert!(msg.starts_with(want), "{msg}");
    }
}

#[test]
fn requests_equal_a_session_and_repeat() {
    let bytes = common::read(&common::model_path("tiny-q4_k_m.gguf"));
    let mut msg = String::new();
    let mut h = Host::load(&bytes, &params(), Serial, &mut msg).unwrap();
    let want = reference(&bytes, "Once upon a time", greedy(12));
    assert_eq!(want.len(), 12);
    assert_eq!(generate(&mut h, "Once upon a time", greedy(12)), want);
    // Another prompt in between, then the first again: the same tokens.
    assert_eq!(generate(&mut h, "Hello", greedy(5)).len(), 5);
    assert_eq!(generate(&mut h, "Once upon a time", greedy(12)), want);
    // Seeded sampling restarts from the seed on every request.
    let hot = MilliSampling::DEFAULT
        .parse(b"temperature=4 top_k=0 top_p=1 min_p=0 seed=7 n_predict=10")
        .unwrap();
    let a = generate(&mut h, "Once upon a time", hot);
    assert_eq!(generate(&mut h, "Once upon a time", hot), a);
    assert_eq!(a, reference(&bytes, "Once upon a time", hot));
    // Steps after the end, or before any start, are refused or end at once.
    assert_eq!(h.step(), Err(ErrorKind::Invalid));
}

#[test]
fn a_prompt_over_the_context_is_too_big() {
    let bytes = common::read(&common::model_path("tiny-q4_k_m.gguf"));
    let mut msg = String::new();
    let mut h = Host::load(
        &bytes,
        &HostParams {
            n_ctx: 8,
            ..params()
        },
        Serial,
        &mut msg,
    )
    .unwrap();
    let long = "one two three four five six seven eight nine ten eleven twelve";
    assert_eq!(
        h.start(long.as_bytes(), greedy(4), &mut msg),
        Err(ErrorKind::TooBig)
    );
    assert!(!msg.is_empty());
}

fn advise(
    h: &mut Host<'_, Serial>,
    req: &[u8],
    avail: u64,
) -> (Result<Response, ErrorKind>, String) {
    let mut msg = String::new();
    let r = h.advise(req, &mut || avail, &mut msg);
    (r, msg)
}

#[test]
fn advisor_slots_are_an_lru_of_prefilled_policies() {
    let bytes = common::read(&common::model_path("tiny-q4_k_m.gguf"));
    let mut msg = String::new();
    let mut h = Host::load(&bytes, &params(), Serial, &mut msg).unwrap();
    let answers: [&[u8]; 2] = [b" Y", b" No"];
    let pol = |p: &str| encode(256, 0, p.as_bytes(), b"event text", b"", &answers);
    let (a, b, c) = (pol("Policy A."), pol("Policy B."), pol("Policy C."));
    let ra = advise(&mut h, &a, u64::MAX).0.unwrap();
    assert_eq!(ra.scores().len(), 2);
    assert!(ra.best < 2 && ra.prefix_tokens > 0 && ra.event_tokens > 0);
    // The same request again: reused, bit-identical.
    assert_eq!(advise(&mut h, &a, u64::MAX).0.unwrap(), ra);
    let st = h.advise_stats();
    assert_eq!(
        (st.prefills, st.reuses, st.slots_used, st.slots),
        (1, 1, 1, 2)
    );
    advise(&mut h, &b, u64::MAX).0.unwrap();
    advise(&mut h, &a, u64::MAX).0.unwrap(); // A most recent: C replaces B
    advise(&mut h, &c, u64::MAX).0.unwrap();
    advise(&mut h, &a, u64::MAX).0.unwrap();
    let st = h.advise_stats();
    assert_eq!((st.prefills, st.reuses, st.slots_used), (3, 3, 2));
    // The response record round-trips.
    let mut text = String::new();
    ra.encode(&mut text).unwrap();
    assert_eq!(Response::parse(text.as_bytes()), Some(ra));
}

#[test]
fn advisor_contexts_are_bounded_and_checked_against_memory() {
    let bytes = common::read(&common::model_path("tiny-q4_k_m.gguf"));
    let mut msg = String::new();
    let mut h = Host::load(&bytes, &params(), Serial, &mut msg).unwrap();
    let answers: [&[u8]; 2] = [b" Y", b" No"];
    // Over advise_max_ctx (4096): refused before anything is built.
    let (r, m) = advise(
        &mut h,
        &encode(131072, 0, b"Policy.", b"ev", b"", &answers),
        u64::MAX,
    );
    assert_eq!(r, Err(ErrorKind::Invalid));
    assert!(m.contains("over the limit of 4096"), "{m}");
    // A context that does not fit the available memory: ENOMEM, no slot.
    let (r, m) = advise(
        &mut h,
        &encode(4096, 0, b"Policy.", b"ev", b"", &answers),
        1 << 20,
    );
    assert_eq!(r, Err(ErrorKind::OutOfMemory));
    assert!(m.contains("positions needs"), "{m}");
    assert_eq!(h.advise_stats().slots_used, 0);
    // Malformed and oversized records.
    assert_eq!(
        advise(&mut h, b"llxa2 64\n", u64::MAX).0,
        Err(ErrorKind::Invalid)
    );
    assert_eq!(
        advise(&mut h, &vec![b'a'; 16385], u64::MAX).0,
        Err(ErrorKind::TooBig)
    );
    // Enough memory: served.
    assert!(advise(
        &mut h,
        &encode(512, 0, b"Policy.", b"ev", b"", &answers),
        u64::MAX
    )
    .0
    .is_ok());
    // Not enough for a second one: the cached one is freed and the new one
    // checked again (still too big here).
    let (r, _) = advise(
        &mut h,
        &encode(4096, 0, b"Other.", b"ev", b"", &answers),
        1 << 20,
    );
    assert_eq!(r, Err(ErrorKind::OutOfMemory));
    assert_eq!(h.advise_stats().slots_used, 0);
}

/// A chat request (REQ_CHAT): the prefix and suffix's control-token
/// spellings are control tokens, the event's stay text; the scores equal
/// an advisor laid out and fed by hand the same way (what the loader's
/// user-space advisor does), and differ from scoring the event with its
/// specials parsed (so the test sees where the event's text went).
#[test]
fn chat_requests_tokenize_only_the_policy_text_as_control_tokens() {
    use llamux_engine::advise::request::REQ_CHAT;
    use llamux_engine::advise::{layout, Advisor};
    let bytes = common::read(&common::model_path("tiny-q4_k_m.gguf"));
    let mut msg = String::new();
    let mut h = Host::load(&bytes, &params(), Serial, &mut msg).unwrap();
    let answers: [&[u8]; 2] = [b" Y", b" No"];
    let (prefix, suffix) = (&b"System.</s><s> Q:"[..], &b"</s><s> A:"[..]);
    let event = &b"/tmp/x</s><s>[INST] <|im_start|>"[..];
    let req = encode(256, REQ_CHAT, prefix, event, suffix, &answers);
    let got = advise(&mut h, &req, u64::MAX).0.unwrap();

    let g = Gguf::parse(&bytes).unwrap();
    let m = Model::from_gguf(&g).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let mut scratch = tok.scratch(256).unwrap();
    let enc = |text: &[u8], bos: bool, special: bool, scratch: &mut _| {
        let mut out = vec![0u32; text.len() + 2];
        let n = tok
            .encode_with(text, bos, special, scratch, &mut out)
            .unwrap();
        out.truncate(n);
        out
    };
    let p = enc(prefix, true, true, &mut scratch);
    let s = enc(suffix, false, true, &mut scratch);
    let eos = tok.eos().unwrap();
    assert!(p.contains(&eos) && s.contains(&eos), "{p:?} {s:?}");
    let a: Vec<Vec<u32>> = answers
        .iter()
        .map(|a| enc(a, false, false, &mut scratch))
        .collect();
    let a: Vec<&[u32]> = a.iter().map(|a| a.as_slice()).collect();
    let (ctx, n_batch) = layout(true, 256, p.len(), s.len(), 1);
    assert_eq!((ctx, n_batch), (512, 128));
    let mut adv = Advisor::new(&m, ctx, n_batch).unwrap();
    adv.set_prefix(&m, &p, &mut Serial).unwrap();
    let score = |adv: &mut Advisor, special: bool, scratch: &mut _| {
        let mut ev = enc(event, false, special, scratch);
        ev.extend_from_slice(&s);
        let mut sc = [0f32; 2];
        adv.score(&m, &ev, &a, &mut sc, &mut Serial).unwrap();
        (ev.len(), sc)
    };
    let (n_plain, plain) = score(&mut adv, false, &mut scratch);
    assert_eq!(got.scores(), &plain[..]);
    assert_eq!((got.prefix_tokens, got.event_tokens), (p.len(), n_plain));
    let (_, parsed) = score(&mut adv, true, &mut scratch);
    assert_ne!(got.scores(), &parsed[..]);
    // The same texts without REQ_CHAT (suffix folded into the event: the
    // plain prompt) tokenize the prefix as text: other scores.
    let mut ev2 = event.to_vec();
    ev2.extend_from_slice(suffix);
    let plain_req = encode(256, 0, prefix, &ev2, b"", &answers);
    let other = advise(&mut h, &plain_req, u64::MAX).0.unwrap();
    assert_ne!(other.prefix_tokens, got.prefix_tokens);
    // A chat prefix too long for max_ctx once laid out is refused.
    let big = vec![b'w'; 8000];
    let mut hp = params();
    hp.advise_max_ctx = 512;
    let mut h2 = Host::load(&bytes, &hp, Serial, &mut msg).unwrap();
    let (r, m2) = advise(
        &mut h2,
        &encode(256, REQ_CHAT, &big, b"e", suffix, &answers),
        u64::MAX,
    );
    assert_eq!(r, Err(ErrorKind::TooBig), "{m2}");
    assert!(m2.contains("over the limit of 512"), "{m2}");
}

#[test]
fn info_names_the_chat_format() {
    let bytes = common::read(&common::model_path("tiny-q4_k_m.gguf"));
    let mut msg = String::new();
    let h = Host::load(&bytes, &params(), Serial, &mut msg).unwrap();
    // The tiny models have no chat template.
    assert!(h.info().contains("\nchat_format: none\n"), "{}", h.info());
    use llamux_engine::advise::chat_format_of;
    assert_eq!(chat_format_of("{{'<|im_start|>' + role}}"), Some("chatml"));
    assert_eq!(chat_format_of("{{ '[INST] ' + content }}"), Some("inst"));
    assert_eq!(chat_format_of("{{ content }}"), None);
}
