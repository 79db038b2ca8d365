//! Ctrl-C: the terminal sends SIGINT to the whole process group, so the running child stops by
//! itself. We only remember it, let the failing step unwind (guards remove temporary containers
//! and directories), and exit 130.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn install() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub fn happened() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
