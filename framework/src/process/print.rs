//! `parallel::print!`: the seed's `parallel.print`, prefixed with the id.

/// The prefix of this process's lines: `<parallel#014>` for process 14.
pub fn prefix() -> String {
    format!("<parallel#{:03}>", super::child::id())
}

/// Prints a line prefixed with this process's id, like the seed's
/// `parallel.print`: `<parallel#014>  something`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        ::std::println!("{}  {}", $crate::process::prefix(), ::std::format!($($arg)*))
    };
}
