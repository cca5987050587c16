//! The console: prompts on the main thread, and printing from every thread.
//!
//! Two threads print: the main thread (menu, prompts, answers, video frames)
//! and the reader thread (joins, leaves, messages, which arrive at any
//! moment, also while a prompt waits). On a terminal, rustyline edits the
//! line and its external printer puts events *above* the line being typed.
//! When stdin is a pipe, lines are read plainly — by a thread of their own,
//! so that a playback can take its commands (`p`, `<`, `>`, `q`) from them
//! while the rest wait for the menu — and an event that arrives while a
//! prompt is showing starts on a fresh line and reprints the prompt.
//! While the terminal player has the terminal in raw mode (see
//! [`super::terminal`], which owns the terminal's modes), lines end in CR LF.

use std::collections::VecDeque;
use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use crossbeam_channel::Receiver;

use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

use super::keys::{self, Wish};
use super::terminal;

/// What a prompt got.
pub(crate) enum Answer {
    /// A line, without its newline.
    Line(String),
    /// End of input (Ctrl-D, or the pipe closed).
    Eof,
    /// Ctrl-C while the line editor had the terminal.
    Interrupted,
}

/// Reads answers to prompts. Owned by the main thread.
pub(crate) struct Console {
    editor: Option<DefaultEditor>,
    stdin_is_terminal: bool,
    printer: Printer,
    /// Plain stdin's lines, read ahead by the `stdin` thread.
    lines: Receiver<String>,
    /// Lines read during a playback that were not its commands: the menu's next answers.
    kept: VecDeque<String>,
}

/// Prints events; cloned into every thread that prints. Its lock is held
/// while an event, an error, a plain prompt or a video frame is written, so
/// that none of them lands in the middle of another.
#[derive(Clone)]
pub(crate) struct Printer {
    inner: Arc<Mutex<PrinterState>>,
}

struct PrinterState {
    /// rustyline's printer, when the line editor runs.
    external: Option<Box<dyn ExternalPrinter + Send>>,
    /// The prompt showing without an answer yet (plain mode only).
    open_prompt: Option<String>,
}

impl Console {
    /// Uses the line editor when stdin and stdout are terminals, plain lines otherwise.
    pub(crate) fn new() -> Console {
        let mut external: Option<Box<dyn ExternalPrinter + Send>> = None;
        let mut editor = None;
        if io::stdin().is_terminal() && io::stdout().is_terminal() {
            terminal::save();
            if let Ok(mut ed) = DefaultEditor::new() {
                if let Ok(printer) = ed.create_external_printer() {
                    external = Some(Box::new(printer));
                }
                editor = Some(ed);
            }
        }
        let printer = Printer { inner: Arc::new(Mutex::new(PrinterState { external, open_prompt: None })) };
        let lines = if editor.is_some() { crossbeam_channel::never() } else { read_lines() };
        Console { editor, printer, stdin_is_terminal: io::stdin().is_terminal(), lines, kept: VecDeque::new() }
    }

    /// During a playback: a playback command from piped stdin, if the next
    /// line is one. Any other line is kept for the menu, and so is every
    /// line after it, in order; at end of input the playback goes on.
    pub(crate) fn playback_command(&mut self) -> Option<Wish> {
        if !self.kept.is_empty() {
            return None;
        }
        let line = self.lines.try_recv().ok()?;
        let wish = keys::stdin_line(&line);
        if wish.is_none() {
            self.kept.push_back(line);
        }
        wish
    }

    /// A printer for other threads.
    pub(crate) fn printer(&self) -> Printer {
        self.printer.clone()
    }

    /// Shows `prompt` and waits for a line.
    pub(crate) fn ask(&mut self, prompt: &str) -> Answer {
        if let Some(editor) = &mut self.editor {
            return match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    Answer::Line(line)
                }
                Err(ReadlineError::Interrupted) => Answer::Interrupted,
                Err(_) => Answer::Eof,
            };
        }
        {
            let mut state = self.printer.lock();
            print!("{prompt}");
            let _ = io::stdout().flush();
            state.open_prompt = Some(prompt.to_string());
        }
        let read = self.kept.pop_front().or_else(|| self.lines.recv().ok());
        self.printer.lock().open_prompt = None;
        match read {
            None => {
                // End of input right after a prompt: finish its line.
                println!();
                Answer::Eof
            }
            Some(line) => {
                // Piped input is not echoed: end the prompt's line ourselves,
                // so that every line of output starts with its own text.
                if !self.stdin_is_terminal {
                    println!();
                }
                Answer::Line(line)
            }
        }
    }
}

/// Starts the `stdin` thread: it reads lines (without their line ending)
/// until end of input, which closes the channel.
fn read_lines() -> Receiver<String> {
    // Read ahead by a few lines at most: a long pipe waits in the pipe.
    let (sender, lines) = crossbeam_channel::bounded(64);
    // If the thread cannot start, its end of the channel is dropped with it: input simply ends.
    let _ = thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let mut line = String::new();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let kept = line.trim_end_matches(['\n', '\r']).len();
                    line.truncate(kept);
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    lines
}

impl Printer {
    fn lock(&self) -> MutexGuard<'_, PrinterState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prints one event (one or more lines) to stdout without disturbing a prompt.
    pub(crate) fn event(&self, text: &str) {
        let styled;
        let text = if colour::stdout() {
            styled = text.lines().map(colour::event_line).collect::<Vec<_>>().join("\n");
            styled.as_str()
        } else {
            text
        };
        let mut state = self.lock();
        if terminal::player_active() {
            let mut out = io::stdout().lock();
            let _ = write!(out, "{}\r\n", text.replace('\n', "\r\n"));
            let _ = out.flush();
            return;
        }
        if let Some(external) = &mut state.external
            && external.print(format!("{text}\n")).is_ok()
        {
            return;
        }
        let mut out = io::stdout().lock();
        match &state.open_prompt {
            Some(prompt) => {
                let _ = write!(out, "\n{text}\n{prompt}");
            }
            None => {
                let _ = writeln!(out, "{text}");
            }
        }
        let _ = out.flush();
    }

    /// Prints an error line to stderr.
    pub(crate) fn error(&self, text: &str) {
        let state = self.lock();
        if state.open_prompt.is_some() {
            println!();
        }
        let end = if terminal::player_active() { "\r\n" } else { "\n" };
        let label = if colour::stderr() { "\x1b[1;31merror:\x1b[0m" } else { "error:" };
        eprint!("{label} {}{end}", text.replace('\n', end));
    }

    /// Writes terminal output (a video frame) as one piece, between events.
    pub(crate) fn write_raw(&self, text: &str) {
        let _state = self.lock();
        let mut out = io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Colour for senders, notices and warnings — on a terminal only, and never
/// when `NO_COLOR` is set (<https://no-color.org>). Lines arrive here already
/// made visible, so the only escape sequences in them are the ones added here.
mod colour {
    use std::io::{self, IsTerminal};
    use std::sync::OnceLock;

    fn wanted(is_terminal: bool) -> bool {
        is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    }

    /// Whether stdout gets colour.
    pub(super) fn stdout() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| wanted(io::stdout().is_terminal()))
    }

    /// Whether stderr gets colour.
    pub(super) fn stderr() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| wanted(io::stderr().is_terminal()))
    }

    /// One event line with its parts coloured.
    pub(super) fn event_line(line: &str) -> String {
        const RESET: &str = "\x1b[0m";
        if let Some(rest) = line.strip_prefix("warning:") {
            return format!("\x1b[1;33mwarning:{RESET}{rest}");
        }
        if let Some(rest) = line.strip_prefix('[')
            && let Some((sender, text)) = rest.split_once("] ")
        {
            return format!("\x1b[1;36m[{sender}]{RESET} {text}");
        }
        let notice = line.ends_with(" joined")
            || line.contains(" left (")
            || line.starts_with("new key for ")
            || line.starts_with("sealed message from ");
        if notice { format!("\x1b[2m{line}{RESET}") } else { line.to_string() }
    }
}
