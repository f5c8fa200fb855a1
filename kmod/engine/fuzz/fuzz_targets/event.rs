#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llamux::policy::Policy;
use llamux_checks::{event as check, policy as policy_check};

static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let p = POLICIES.get_or_init(|| {
        policy_check::shipped(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../policies"))
    });
    check::check(data, p)
});
