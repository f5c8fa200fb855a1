//! Output that never panics: std's `println!` panics when stdout fails
//! (EPIPE from `llamux info | head`, ENOSPC from `> /dev/full`). main.rs
//! routes this binary's `println!`/`print!`/`eprintln!`/`eprint!` here.
//!
//! - stdout: a reader that went away ends the command quietly with exit 0
//!   (it has all it wanted); any other failure is an error message and
//!   exit 1;
//! - stderr: failures are ignored (there is nowhere left to report them).

use std::fmt::Arguments;
use std::io::{ErrorKind, Write};

pub fn out(args: Arguments<'_>, newline: bool) {
    let mut o = std::io::stdout().lock();
    let r = o
        .write_fmt(args)
        .and_then(|()| if newline { o.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = r {
        drop(o);
        stdout_failed(e);
    }
}

pub fn err(args: Arguments<'_>, newline: bool) {
    let mut e = std::io::stderr().lock();
    let _ = e
        .write_fmt(args)
        .and_then(|()| if newline { e.write_all(b"\n") } else { Ok(()) });
}

/// Writes `bytes` to stdout and flushes (streamed tokens).
pub fn out_bytes(bytes: &[u8]) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(bytes).and_then(|()| o.flush()) {
        drop(o);
        stdout_failed(e);
    }
}

/// Ends the process after a failed write to stdout.
pub fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    let _ = writeln!(std::io::stderr(), "llamux: stdout: {e}");
    std::process::exit(1);
}
