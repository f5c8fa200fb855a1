//! The advisor's request record (llamux_engine::advise::request): any
//! bytes in, a request or None out, never a panic. A parsed request
//! re-encodes to a record that parses to the same request; and any texts
//! (the input split at 0xff bytes: prefix, event, suffix, answers; chat
//! when the input's length is odd) encode to a record that parses back to
//! exactly those texts, or, without REQ_CHAT and with a suffix, to None.
//! Replayed by kmod/engine/tests/advise_request.rs.

use llamux_engine::advise::request::{encode, Request, REQ_CHAT};
use llamux_engine::advise::MAX_ANSWERS;

pub fn check(data: &[u8]) {
    if let Some(r) = Request::parse(data) {
        let answers: Vec<&[u8]> = r.answers().collect();
        assert_eq!(answers.len(), r.n_answers());
        assert!(answers
            .iter()
            .zip(r.answer_lens())
            .all(|(a, &l)| a.len() == l && l > 0));
        assert_eq!(answers.concat(), r.answers_bytes());
        assert!(r.chat() || r.suffix.is_empty());
        let body = [r.prefix, r.event, r.suffix, r.answers_bytes()].concat();
        assert!(data.ends_with(&body));
        assert_eq!(
            Request::parse(&encode(
                r.ctx, r.flags, r.prefix, r.event, r.suffix, &answers
            )),
            Some(r)
        );
    }
    let mut parts = data.split(|&b| b == 0xff);
    let (Some(prefix), Some(event), Some(suffix)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let answers: Vec<&[u8]> = parts.collect();
    let ctx = 1 + data.len() % llamux_engine::advise::request::MAX_CTX;
    let flags = if data.len() % 2 == 1 { REQ_CHAT } else { 0 };
    let rec = encode(ctx, flags, prefix, event, suffix, &answers);
    let ok = !event.is_empty()
        && (flags == REQ_CHAT || suffix.is_empty())
        && (1..=MAX_ANSWERS).contains(&answers.len())
        && answers.iter().all(|a| !a.is_empty());
    match Request::parse(&rec) {
        Some(r) => {
            assert!(ok);
            assert_eq!(
                (r.ctx, r.flags, r.prefix, r.event, r.suffix),
                (ctx, flags, prefix, event, suffix)
            );
            assert_eq!(r.answers().collect::<Vec<_>>(), answers);
        }
        None => assert!(!ok, "valid texts rejected: {rec:?}"),
    }
}
