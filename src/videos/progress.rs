//! How `ciphercast videos --from` reports its work, on the main thread that
//! does it: a progress bar per file on a terminal (the `indicatif` crate),
//! and one line per file when it is done — the only output when stdout is
//! a pipe or a file, where a bar redrawn in place would be noise.
//!
//! The bar's length is the container's frame count, which is only an
//! estimate: the bar grows when a file has more frames than its header
//! said, and is set to the real count when the file is done, so it always
//! finishes full.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes: a terminal gets bars, anything else lines.
pub(crate) struct Progress {
    terminal: bool,
}

impl Progress {
    /// Bars when stdout is a terminal, lines otherwise.
    pub(crate) fn on_stdout() -> Progress {
        Progress { terminal: std::io::stdout().is_terminal() }
    }

    /// A line of its own (above any bar: one file's bar is only made after
    /// the lines about it).
    pub(crate) fn note(&self, line: &str) {
        println!("{line}");
    }

    /// Starts reporting one file, whose header claims `estimate` frames (0:
    /// unknown).
    pub(crate) fn file(&self, name: &str, estimate: u32) -> FileProgress {
        let bar = self.terminal.then(|| new_bar(name, estimate));
        FileProgress { bar, frames: 0 }
    }
}

/// The progress of one file.
pub(crate) struct FileProgress {
    /// `None` when stdout is not a terminal.
    bar: Option<ProgressBar>,
    frames: u64,
}

impl FileProgress {
    /// One more source frame done.
    pub(crate) fn frame(&mut self) {
        self.frames += 1;
        if let Some(bar) = &self.bar {
            if bar.length().is_some_and(|len| self.frames > len) {
                bar.set_length(self.frames);
            }
            bar.set_position(self.frames);
        }
    }

    /// The file is done: the bar ends full at the real count, then `line`.
    pub(crate) fn done(mut self, line: &str) {
        if let Some(bar) = self.bar.take() {
            bar.set_length(self.frames);
            bar.set_position(self.frames);
            bar.finish();
        }
        println!("{line}");
    }
}

impl Drop for FileProgress {
    /// A file that failed: its bar stays where it stopped, and the error
    /// is printed below it.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

fn new_bar(name: &str, estimate: u32) -> ProgressBar {
    let target = ProgressDrawTarget::stdout();
    let (bar, template) = if estimate > 0 {
        let template = "{prefix} [{bar:30}] {pos}/{len} frames, {per_sec:1}, {eta} left";
        (ProgressBar::with_draw_target(Some(u64::from(estimate)), target), template)
    } else {
        (ProgressBar::with_draw_target(None, target), "{prefix} {spinner} {pos} frames, {per_sec:1}")
    };
    // The templates are constants: a bad one is a bug, shown as a plain bar.
    let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_prefix(name.to_string());
    bar
}
