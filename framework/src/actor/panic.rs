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

/// What [`IN_HANDLER`] says: this thread runs no handler now.
const OUTSIDE: u8 = 0;
/// This thread runs a handler, and the hook saw no panic in it.
const INSIDE: u8 = 1;
/// This thread runs a handler, and the hook saw a panic in it ([`SEEN`]).
const PANICKED: u8 = 2;

thread_local! {
    /// Whether this thread runs an actor's handler, and whether the hook saw
    /// a panic in it: one byte, so a handler that did not panic (every
    /// message nearly) costs three plain loads and stores of it, and
    /// [`SEEN`] (which needs a destructor) is touched only after a panic.
    static IN_HANDLER: Cell<u8> = const { Cell::new(OUTSIDE) };
    /// The panic the hook saw in the handler this thread runs.
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
    outer: u8,
}

impl HandlerScope {
    #[inline]
    pub(crate) fn enter() -> Self {
        let outer = IN_HANDLER
            .try_with(|h| h.replace(INSIDE))
            .unwrap_or(OUTSIDE);
        HandlerScope { outer }
    }

    /// The panic the hook saw in this scope, if it is installed and one happened.
    #[inline]
    pub(crate) fn seen(&self) -> Option<SeenPanic> {
        if IN_HANDLER.try_with(Cell::get).ok()? != PANICKED {
            return None;
        }
        let _ = IN_HANDLER.try_with(|h| h.set(INSIDE));
        SEEN.try_with(Cell::take).ok().flatten().map(|seen| *seen)
    }
}

impl Drop for HandlerScope {
    #[inline]
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
            if IN_HANDLER.try_with(Cell::get).unwrap_or(OUTSIDE) == OUTSIDE {
                return previous(info);
            }
            let seen = SeenPanic {
                location: info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line())),
                message: panic_text(info.payload()),
            };
            if SEEN.try_with(|s| s.set(Some(Box::new(seen)))).is_ok() {
                let _ = IN_HANDLER.try_with(|h| h.set(PANICKED));
            } else {
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
        assert_eq!(IN_HANDLER.with(Cell::get), OUTSIDE);
        {
            let outer = HandlerScope::enter();
            assert_eq!(IN_HANDLER.with(Cell::get), INSIDE);
            {
                let _inner = HandlerScope::enter();
                assert_eq!(IN_HANDLER.with(Cell::get), INSIDE);
            }
            assert_eq!(
                IN_HANDLER.with(Cell::get),
                INSIDE,
                "the outer scope still runs"
            );
            assert_eq!(outer.seen(), None);
        }
        assert_eq!(IN_HANDLER.with(Cell::get), OUTSIDE);
    }

    #[test]
    fn the_hook_notes_a_panic_inside_a_scope_once_and_only_there() {
        install_handler_panic_hook();
        let scope = HandlerScope::enter();
        let caught = std::panic::catch_unwind(|| panic!("boom in a handler"));
        assert!(caught.is_err());
        if backtrace_requested() {
            // Backtraces asked for: no hook, panics print as usual.
            assert_eq!(IN_HANDLER.with(Cell::get), INSIDE);
            assert_eq!(scope.seen(), None);
            return;
        }
        assert_eq!(IN_HANDLER.with(Cell::get), PANICKED);
        let seen = scope.seen().expect("the hook noted the panic");
        assert_eq!(seen.message, "boom in a handler");
        let at = seen.location.expect("a panic! has a location");
        assert!(at.contains("panic.rs:"), "{at}");
        assert_eq!(scope.seen(), None, "a panic is reported once");
        drop(scope);
        assert_eq!(IN_HANDLER.with(Cell::get), OUTSIDE);
        // Outside a scope the hook leaves the panic to the hook before it.
        let caught = std::panic::catch_unwind(|| panic!("outside"));
        assert!(caught.is_err());
        assert_eq!(IN_HANDLER.with(Cell::get), OUTSIDE);
        assert_eq!(SEEN.with(Cell::take), None);
    }
}
