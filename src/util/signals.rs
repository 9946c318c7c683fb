//! Stop signals of a training run. SIGINT, SIGTERM and SIGHUP set [`INTERRUPTED`] (the loop
//! finishes its step, writes a checkpoint and returns) and record which signal came
//! ([`stop_signal`]); a second one of them exits at once with 128 + its number. SIGXFSZ (a
//! file-size limit) is caught so that the write fails with an error (and its temp file is
//! removed) instead of killing the process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};

/// Set by a stop signal: the training loop saves a checkpoint after its step and returns.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

static SIGNAL: AtomicUsize = AtomicUsize::new(0);
static XFSZ: AtomicBool = AtomicBool::new(false);

/// The stop signals handled.
pub const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Install the stop-signal handlers (once per process; training calls it).
pub fn install() -> std::io::Result<()> {
    for sig in STOP_SIGNALS {
        // Registered first, so it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, &INTERRUPTED)?;
        signal_hook::flag::register_usize(sig, &SIGNAL, sig as usize)?;
        signal_hook::flag::register(sig, &INTERRUPTED)?;
    }
    // Say at once that the signal was seen (a handler cannot print safely).
    std::thread::Builder::new().name("stop-signal".into()).spawn(|| loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let Some(sig) = stop_signal() {
            let n = name(sig);
            eprintln!("\n{n}: finishing this step, then saving a checkpoint and the partial adapter ({n} again quits at once)");
            break;
        }
    })?;
    Ok(())
}

/// Catch SIGXFSZ (a file-size limit, `ulimit -f`): the write then fails with an error and the
/// temp file is removed, instead of the process being killed. Every command calls this.
pub fn catch_file_size_limit() -> std::io::Result<()> {
    signal_hook::flag::register(SIGXFSZ, &XFSZ).map(|_| ())
}

/// The stop signal received, if any.
pub fn stop_signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s as i32),
    }
}

/// The signal's name (SIGINT, SIGTERM, SIGHUP).
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
