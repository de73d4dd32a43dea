//! The demo's screen on a terminal: the alternate screen (the user's scrollback stays as it
//! was), each frame drawn from the top-left corner over the last one, so nothing scrolls.
//! Plain ANSI/VT100 sequences, which every terminal emulator in use understands. Leaving is
//! tied to `Drop`, so the terminal is restored however the demo ends: done, ctrl-c, an error
//! or a panic.

use std::io::Write as _;

/// Switch to the alternate screen and hide the cursor.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
/// Show the cursor and switch back to the normal screen.
const LEAVE: &str = "\x1b[?25h\x1b[?1049l";
/// Cursor to the top-left corner.
const HOME: &str = "\x1b[H";
/// Clear from the cursor to the end of the line.
const CLEAR_LINE: &str = "\x1b[K";
/// Clear from the cursor to the end of the screen.
const CLEAR_BELOW: &str = "\x1b[J";

/// The alternate screen while it lives.
pub struct AltScreen {
    _private: (),
}

impl AltScreen {
    pub fn enter() -> std::io::Result<AltScreen> {
        let mut out = std::io::stdout().lock();
        out.write_all(ENTER.as_bytes())?;
        out.flush()?;
        Ok(AltScreen { _private: () })
    }

    /// Draws `lines` over the previous frame in one write, so the terminal never shows half.
    pub fn draw(&self, lines: &[String]) -> std::io::Result<()> {
        let mut frame = String::from(HOME);
        for (index, line) in lines.iter().enumerate() {
            // No line break after the last line: on the bottom row it would scroll the screen.
            if index > 0 {
                frame.push_str("\r\n");
            }
            frame.push_str(line);
            frame.push_str(CLEAR_LINE);
        }
        frame.push_str(CLEAR_BELOW);
        let mut out = std::io::stdout().lock();
        out.write_all(frame.as_bytes())?;
        out.flush()
    }
}

impl Drop for AltScreen {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        // Nothing to do when the terminal is gone; there is no one left to show an error to.
        let _ = out.write_all(LEAVE.as_bytes());
        let _ = out.flush();
    }
}

/// The terminal's (rows, columns), or 24 × 80 when stdout is not a terminal.
pub fn size() -> (usize, usize) {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass; stdout's descriptor is
    // valid for the life of the process, and a failure leaves the zeros checked below.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_row > 0 && size.ws_col > 0 {
        (usize::from(size.ws_row), usize::from(size.ws_col))
    } else {
        (24, 80)
    }
}
