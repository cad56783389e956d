//! Where commands print their answer. `levee status | head -3` closes the
//! pipe early; `println!` would then panic. A closed pipe here only
//! means nobody reads the rest: it is dropped and the command ends as it
//! would have, quietly.

use std::io::{ErrorKind, Write};

/// Writes `args` and a newline to stdout; a reader that went away is not
/// an error.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = writeln!(stdout, "{args}")
        && err.kind() != ErrorKind::BrokenPipe
    {
        eprintln!("cannot write the answer to stdout: {err}");
    }
}
