#![no_main]

use libfuzzer_sys::fuzz_target;
use llamux_checks::policy as check;

fuzz_target!(|data: &[u8]| check::check(data));
