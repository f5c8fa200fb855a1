//! Probe event records (ebpf/common `Event`) as the loader decodes them
//! (loader/src/event.rs): any bytes in, an event or None out, never a
//! panic. A decoded event is the record's bytes unchanged, it offers
//! exactly its hook's fields, and every shipped policy of that hook
//! renders its prompt and key from them. Input: the record, then
//! optionally 8 bytes of rate (f64) and 8 of first-seen time.
//! Replayed by loader/tests/fuzz_regressions.rs.

use llamux::event;
use llamux::policy::{Hook, Policy};
use llamux_common::Event;

const HOOKS: [Hook; 4] = [Hook::Exec, Hook::Open, Hook::Syscall, Hook::Sched];

pub fn check(data: &[u8], policies: &[Policy]) {
    let size = std::mem::size_of::<Event>();
    let Some(e) = event::decode(data) else {
        assert!(data.len() < size);
        return;
    };
    // SAFETY: Event is #[repr(C)] plain integers without implicit padding.
    let bytes = unsafe { std::slice::from_raw_parts((&e as *const Event).cast::<u8>(), size) };
    assert_eq!(bytes, &data[..size]);
    let word = |i: usize| {
        data.get(size + 8 * i..size + 8 * i + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    let (rate, first_seen) = (f64::from_bits(word(0)), word(1));
    for hook in HOOKS {
        let m = event::fields(&e, hook, rate, first_seen, 1.0);
        let mut keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        let mut want = hook.fields().to_vec();
        keys.sort_unstable();
        want.sort_unstable();
        assert_eq!(keys, want);
        for p in policies.iter().filter(|p| p.hook == hook) {
            // No field adds a line or a control character to the prompt.
            let text = p.render(&m).unwrap();
            assert_eq!(
                text.matches('\n').count(),
                p.template.matches('\n').count(),
                "{text:?}"
            );
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "{text:?}"
            );
            let (key, _) = p.key_of(&m).unwrap();
            assert_eq!((key.hook, key.kind), (hook.id(), p.key.id()));
        }
    }
    let hit = event::hit_json(&e, "p", 1.0);
    assert_eq!(hit["answer_index"], e.c >> 32);
}
