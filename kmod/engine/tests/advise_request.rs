//! Replays kmod/engine/fuzz/regressions/advise (the advisor's request
//! records) through the fuzz target's own check.

use llamux_checks::advise as check;

#[test]
fn fuzz_regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/advise");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        check::check(&data);
        n += 1;
    }
    assert!(n > 0, "empty regression corpus in {}", dir.display());
}
