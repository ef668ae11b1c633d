//! `parallel::print!`: the seed's `parallel.print`, prefixed with the id.
//! While a load-balanced task runs ([`Capture`]), what it prints is also
//! kept for its result's metadata (the seed's captured `stdout`).

use std::cell::RefCell;

thread_local! {
    /// What `print!` printed on this thread since a [`Capture`] began
    /// (`None`: nothing captures). Set only while a task runs here.
    static CAPTURED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The prefix of this process's lines: `<parallel#014>` for process 14.
pub fn prefix() -> String {
    format!("<parallel#{:03}>", super::child::id())
}

/// Prints `line` after this process's prefix, and keeps it when a
/// [`Capture`] runs on this thread. Used by [`crate::print!`].
#[doc(hidden)]
pub fn print_line(line: String) {
    let _ = CAPTURED.try_with(|c| {
        if let Some(kept) = c.borrow_mut().as_mut() {
            kept.push_str(&line);
            kept.push('\n');
        }
    });
    // Best effort, as the seed's: a closed stdout does not fail the task.
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{}  {line}", prefix());
}

/// Keeps what [`crate::print!`] prints on this thread from [`Capture::begin`]
/// to [`Capture::end`] (or drop, e.g. after a panic).
pub(crate) struct Capture {
    /// What an enclosing capture had kept (restored at the end).
    outer: Option<String>,
    ended: bool,
}

impl Capture {
    /// Starts keeping this thread's printed lines.
    pub(crate) fn begin() -> Capture {
        let outer = CAPTURED
            .try_with(|c| c.replace(Some(String::new())))
            .ok()
            .flatten();
        Capture {
            outer,
            ended: false,
        }
    }

    /// What was printed since [`Capture::begin`].
    pub(crate) fn end(mut self) -> String {
        self.ended = true;
        let outer = self.outer.take();
        CAPTURED
            .try_with(|c| c.replace(outer))
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if !self.ended {
            let outer = self.outer.take();
            let _ = CAPTURED.try_with(|c| c.replace(outer));
        }
    }
}

/// Prints a line prefixed with this process's id, like the seed's
/// `parallel.print`: `<parallel#014>  something`. In a load-balanced task
/// the line is also in its result's metadata.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::process::print_line(::std::format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_keeps_what_its_thread_prints_and_nothing_after() {
        crate::print!("before");
        let capture = Capture::begin();
        crate::print!("one {}", 1);
        crate::print!("two");
        assert_eq!(capture.end(), "one 1\ntwo\n");
        crate::print!("after");
        assert_eq!(Capture::begin().end(), "");
    }

    #[test]
    fn a_capture_dropped_by_a_panic_stops_capturing() {
        let caught = std::panic::catch_unwind(|| {
            let _capture = Capture::begin();
            crate::print!("lost");
            panic!("the task failed");
        });
        assert!(caught.is_err());
        crate::print!("not kept");
        assert_eq!(Capture::begin().end(), "");
        // Nothing keeps capturing after the dropped capture.
        assert!(CAPTURED.with(|c| c.borrow().is_none()));
    }
}
