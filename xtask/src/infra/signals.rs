//! SIGINT, SIGTERM and SIGHUP: remembered, never fatal on their own. `Ctx` forwards the signal to
//! the running child (a terminal's Ctrl-C already reached it; `kill` or CI's cancel did not), lets
//! the failing step unwind (guards remove temporary containers and files) and `main` exits with
//! 128 + the signal's number.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, OnceLock,
};

use anyhow::{Context, Result};

static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

pub const HANDLED: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

pub fn install() -> Result<()> {
    let flag = RECEIVED.get_or_init(Default::default);
    for signal in HANDLED {
        signal_hook::flag::register_usize(signal, Arc::clone(flag), signal as usize)
            .with_context(|| format!("installing the handler for signal {signal}"))?;
    }
    Ok(())
}

/// The signal received, if any.
pub fn received() -> Option<i32> {
    let n = RECEIVED.get()?.load(Ordering::SeqCst);
    (n != 0).then_some(n as i32)
}

/// Forgets the signal: the command stopped as asked, and ends as a success (`dev`).
pub fn acknowledge() {
    if let Some(flag) = RECEIVED.get() {
        flag.store(0, Ordering::SeqCst);
    }
}

/// The signal's name, for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
