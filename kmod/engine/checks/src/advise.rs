//! The advisor's request record (llamux_engine::advise::request): any
//! bytes in, a request or None out, never a panic. A parsed request
//! re-encodes to a record that parses to the same request; and any texts
//! (the input split at 0xff bytes: prefix, event, answers) encode to a
//! record that parses back to exactly those texts.
//! Replayed by kmod/engine/tests/advise_request.rs.

use llamux_engine::advise::request::{encode, Request};
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
        let body = [r.prefix, r.event, r.answers_bytes()].concat();
        assert!(data.ends_with(&body));
        assert_eq!(
            Request::parse(&encode(r.ctx, r.prefix, r.event, &answers)),
            Some(r)
        );
    }
    let mut parts = data.split(|&b| b == 0xff);
    let (Some(prefix), Some(event)) = (parts.next(), parts.next()) else {
        return;
    };
    let answers: Vec<&[u8]> = parts.collect();
    let ctx = 1 + data.len() % llamux_engine::advise::request::MAX_CTX;
    let rec = encode(ctx, prefix, event, &answers);
    let ok = !event.is_empty()
        && (1..=MAX_ANSWERS).contains(&answers.len())
        && answers.iter().all(|a| !a.is_empty());
    match Request::parse(&rec) {
        Some(r) => {
            assert!(ok);
            assert_eq!((r.ctx, r.prefix, r.event), (ctx, prefix, event));
            assert_eq!(r.answers().collect::<Vec<_>>(), answers);
        }
        None => assert!(!ok, "valid texts rejected: {rec:?}"),
    }
}
