//! How a handler panic is reported: one log line with the panic's message
//! and where it happened, instead of the standard panic output (a line, the
//! message, a note or a whole backtrace) followed by that same log line.
//!
//! Only the location needs the panic hook: the message comes back with the
//! unwinding payload. So the hook that [`install_handler_panic_hook`]
//! installs does one thing, and only for a panic on a thread that is inside
//! an actor's handler right now ([`HandlerScope`]): it notes the location
//! for [`super::deliver`] to log. Every other panic goes to the hook that
//! was installed before, unchanged.

use std::cell::Cell;
use std::sync::Once;

use super::deliver::panic_text;

thread_local! {
    /// True while this thread runs an actor's handler.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    /// The panic the hook saw in the handler this thread runs (boxed: a
    /// handler that did not panic, every message nearly, swaps a null
    /// pointer, with no borrow to check).
    static SEEN: Cell<Option<Box<SeenPanic>>> = const { Cell::new(None) };
}

/// A panic the hook saw inside a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeenPanic {
    /// `file:line`, when the panic had a location.
    pub location: Option<String>,
    /// The panic's message.
    pub message: String,
}

/// Marks this thread as running a handler until dropped; what the hook saw
/// inside is read with [`HandlerScope::seen`].
pub(crate) struct HandlerScope {
    outer: bool,
}

impl HandlerScope {
    pub(crate) fn enter() -> Self {
        let _ = SEEN.try_with(Cell::take);
        let outer = IN_HANDLER.try_with(|h| h.replace(true)).unwrap_or(false);
        HandlerScope { outer }
    }

    /// The panic the hook saw in this scope, if it is installed and one happened.
    pub(crate) fn seen(&self) -> Option<SeenPanic> {
        SEEN.try_with(Cell::take).ok().flatten().map(|seen| *seen)
    }
}

impl Drop for HandlerScope {
    fn drop(&mut self) {
        let _ = IN_HANDLER.try_with(|h| h.set(self.outer));
    }
}

/// True when the user asked for backtraces (`RUST_BACKTRACE` set, not `0`).
fn backtrace_requested() -> bool {
    crate::config::environment().backtrace
}

/// Makes a handler panic print one line (see the module docs) instead of
/// the standard panic output, unless `RUST_BACKTRACE` asks for backtraces:
/// then nothing is installed and such panics print as every panic does.
/// Installed once, by `#[parallel::main]`'s runner; it chains to the hook
/// installed before for every panic outside a handler.
pub(crate) fn install_handler_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if backtrace_requested() {
            return;
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_HANDLER.try_with(Cell::get).unwrap_or(false) {
                return previous(info);
            }
            let seen = SeenPanic {
                location: info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line())),
                message: panic_text(info.payload()),
            };
            if SEEN.try_with(|s| s.set(Some(Box::new(seen)))).is_err() {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_marks_the_thread_and_restores_it() {
        assert!(!IN_HANDLER.with(Cell::get));
        {
            let outer = HandlerScope::enter();
            assert!(IN_HANDLER.with(Cell::get));
            {
                let _inner = HandlerScope::enter();
                assert!(IN_HANDLER.with(Cell::get));
            }
            assert!(IN_HANDLER.with(Cell::get), "the outer scope still runs");
            assert_eq!(outer.seen(), None);
        }
        assert!(!IN_HANDLER.with(Cell::get));
    }
}
