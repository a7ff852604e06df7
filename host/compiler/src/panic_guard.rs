//! tract panics on some models it cannot handle (an ONNX LSTM over a symbolic
//! batch unwraps an undetermined symbol, for one). A build is a user's request,
//! not a bug in wasmops: such a panic becomes a [`BuildError`] naming what tract
//! was doing, without a backtrace on stderr, and the process carries on.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::Once;

use crate::BuildError;

thread_local! {
    /// `Some` while this thread runs guarded code: the last panic's message.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`; a panic inside it becomes `BuildError::Unsupported` mentioning `what`.
pub(crate) fn guarded<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    install_hook();
    CAUGHT.with(|c| *c.borrow_mut() = Some(String::new()));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    let message = CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_default();
    result.unwrap_or_else(|_| {
        Err(BuildError::Unsupported(format!(
            "tract failed while {what}: {message}"
        )))
    })
}

/// Silences panics on guarded threads (their message is kept for the error);
/// every other panic goes to the previous hook as before.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            let guarded = CAUGHT.with(|c| {
                let mut c = c.borrow_mut();
                let Some(slot) = c.as_mut() else { return false };
                *slot = panic_message(info);
                true
            });
            if !guarded {
                previous(info);
            }
        }));
    });
}

fn panic_message(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    match info.location() {
        Some(at) => format!(
            "{text} (at {}:{})",
            at.file().rsplit("/src/").next().unwrap_or(at.file()),
            at.line()
        ),
        None => text.to_string(),
    }
}
