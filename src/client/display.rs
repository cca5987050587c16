//! Where a video plays: an OpenCV window, the terminal, or nowhere.
//!
//! Every display runs on the main thread (macOS requires highgui there), is
//! given each frame as it arrives, and reports what the viewer's keys asked
//! for ([`super::keys`]: pause, seek, stop; closing the window stops). The
//! terminal player draws through the [`Printer`], so that events from the
//! reader thread fall between frames, and leaves the terminal's raw mode and
//! scrolling region to [`super::terminal`].

use std::io::{self, IsTerminal};
use std::time::Duration;

use clap::ValueEnum;
use crossterm::event::{self, Event};
use opencv::core::{Mat, Size, Vector};
use opencv::highgui;
use opencv::imgcodecs::{IMREAD_COLOR, imdecode};
use opencv::imgproc::{INTER_AREA, resize};
use opencv::prelude::*;

use super::console::Printer;
pub(crate) use super::keys::Wish;
use super::keys::{terminal_key, window_key};
use super::terminal;
use crate::shared::visible::visible;

/// The `--display` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Display {
    /// A window when a display is available, else the terminal when stdout is one, else none.
    Auto,
    /// An OpenCV window.
    Window,
    /// 24-bit colour half-blocks in the terminal.
    Terminal,
    /// Decode and count only.
    None,
}

impl Display {
    /// Resolves `auto` for this machine.
    pub(crate) fn resolve(self) -> Display {
        match self {
            Display::Auto if window_system_reachable().is_ok() => Display::Window,
            Display::Auto if io::stdout().is_terminal() && io::stdin().is_terminal() => Display::Terminal,
            Display::Auto => Display::None,
            other => other,
        }
    }
}

/// A display that frames are shown on.
pub(crate) trait Screen {
    /// Shows one decoded frame of `resolution`.
    fn show(&mut self, video: &str, resolution: &str, picture: &Mat) -> Wish;
    /// What the viewer asked for since the last frame (polled between frames).
    fn poll(&mut self) -> Wish;
}

/// Opens the screen for `display` (already resolved).
pub(crate) fn open(display: Display, printer: &Printer) -> Result<Box<dyn Screen>, String> {
    match display {
        Display::Window => {
            window_system_reachable()?;
            Window::open().map(|w| Box::new(w) as Box<dyn Screen>)
        }
        Display::Terminal => Ok(Box::new(TerminalScreen::open(printer.clone()))),
        Display::None | Display::Auto => Ok(Box::new(Headless { keys: io::stdin().is_terminal() })),
    }
}

/// Whether a window can be opened. On Linux, OpenCV's GUI (Qt or GTK) talks to
/// the X server named by `DISPLAY` — and Qt *aborts the process* when that
/// server is unreachable (a stale `DISPLAY` over SSH), so we try to connect
/// to it first and fall back to the terminal instead of crashing.
fn window_system_reachable() -> Result<(), String> {
    if cfg!(target_os = "macos") {
        return Ok(());
    }
    let display = std::env::var("DISPLAY").map_err(|_| "no DISPLAY is set; try --display terminal".to_string())?;
    let unreachable = || format!("no X server is reachable at DISPLAY={}; try --display terminal", visible(&display));
    let (host, screen) = display.rsplit_once(':').ok_or_else(unreachable)?;
    let number: u16 = screen.split('.').next().and_then(|n| n.parse().ok()).ok_or_else(unreachable)?;
    let reachable = if host.is_empty() || host == "unix" {
        unix_socket_reachable(number)
    } else {
        use std::net::ToSocketAddrs;
        (host, 6000u16.saturating_add(number))
            .to_socket_addrs()
            .map(|mut addrs| addrs.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok()))
            .unwrap_or(false)
    };
    if reachable { Ok(()) } else { Err(unreachable()) }
}

#[cfg(unix)]
fn unix_socket_reachable(number: u16) -> bool {
    std::os::unix::net::UnixStream::connect(format!("/tmp/.X11-unix/X{number}")).is_ok()
}

#[cfg(not(unix))]
fn unix_socket_reachable(_: u16) -> bool {
    false
}

/// The largest picture the client decodes, per side: a few hundred bytes of
/// JPEG can declare 32767×32767, and decoding allocates what it declares.
pub(crate) const MAX_PICTURE_SIDE: u32 = 4096;

/// The largest picture a stream may send: [`MAX_PICTURE_SIDE`] on each side
/// at most, and, when its plan names heights (`720p`), at most twice the
/// tallest one's height and four times that in width — room for a file whose
/// label is wrong or an unusual aspect ratio, none for a bomb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PictureLimit {
    width: u32,
    height: u32,
}

impl Default for PictureLimit {
    fn default() -> PictureLimit {
        PictureLimit { width: MAX_PICTURE_SIDE, height: MAX_PICTURE_SIDE }
    }
}

impl PictureLimit {
    /// The limit for a stream whose plan names `resolutions`.
    pub(crate) fn for_plan<'a>(resolutions: impl IntoIterator<Item = &'a str>) -> PictureLimit {
        let height_of = |label: &str| label.strip_suffix('p')?.parse::<u32>().ok().filter(|&h| h > 0);
        match resolutions.into_iter().filter_map(height_of).max() {
            Some(tallest) => {
                let height = tallest.saturating_mul(2).min(MAX_PICTURE_SIDE);
                PictureLimit { width: height.saturating_mul(4).min(MAX_PICTURE_SIDE), height }
            }
            None => PictureLimit::default(),
        }
    }
}

/// Decodes a JPEG, after reading the size it declares; `Err`: why not.
pub(crate) fn decode(jpeg: &[u8], limit: PictureLimit) -> Result<Mat, String> {
    match declared_size(jpeg) {
        Some((width, height)) if width > limit.width || height > limit.height => {
            return Err(format!(
                "declares {width}×{height}, over the {}×{} this stream allows: not decoded",
                limit.width, limit.height
            ));
        }
        Some(_) => {}
        None => return Err("is not a valid JPEG".into()),
    }
    match imdecode(&Vector::<u8>::from_slice(jpeg), IMREAD_COLOR) {
        Ok(picture) if !picture.empty() => Ok(picture),
        _ => Err("is not a valid JPEG".into()),
    }
}

/// The width and height a JPEG's frame header (SOF) declares, read from its
/// markers without decoding anything; `None` if there is none.
fn declared_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2;
    loop {
        // Each segment: FF, a marker byte, a big-endian length that counts itself.
        if *jpeg.get(at)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(at + 1)?;
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        let length = usize::from(u16::from_be_bytes([*jpeg.get(at + 2)?, *jpeg.get(at + 3)?]));
        // SOF0–SOF15, except DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let field = |i: usize| Some(u32::from(u16::from_be_bytes([*jpeg.get(at + i)?, *jpeg.get(at + i + 1)?])));
            return Some((field(7)?, field(5)?));
        }
        if marker == 0xDA || length < 2 {
            return None; // the picture data began without a frame header
        }
        at += 2 + length;
    }
}

/// Decode and count: nothing is shown. With stdin a terminal, its keys
/// still steer the playback (they arrive when Enter is pressed); piped stdin's
/// lines are the console's (`Console::playback_command`).
struct Headless {
    keys: bool,
}

impl Screen for Headless {
    fn show(&mut self, _: &str, _: &str, _: &Mat) -> Wish {
        self.poll()
    }
    fn poll(&mut self) -> Wish {
        if self.keys { terminal_keys() } else { Wish::Continue }
    }
}

/// The first key waiting in the terminal that means something, if any.
fn terminal_keys() -> Wish {
    while let Ok(true) = event::poll(Duration::ZERO) {
        if let Ok(Event::Key(key)) = event::read() {
            let wish = terminal_key(key);
            if wish != Wish::Continue {
                return wish;
            }
        }
    }
    Wish::Continue
}

const WINDOW: &str = "ciphercast";
const MAX_WINDOW: (i32, i32) = (1280, 720);

/// An OpenCV highgui window, titled with the video and its current resolution.
struct Window {
    title: String,
}

impl Window {
    fn open() -> Result<Window, String> {
        highgui::named_window(WINDOW, highgui::WINDOW_NORMAL | highgui::WINDOW_KEEPRATIO | highgui::WINDOW_GUI_NORMAL)
            .map_err(|e| format!("cannot open a window ({e}); try --display terminal"))?;
        Ok(Window { title: String::new() })
    }

    fn keys(&mut self) -> Wish {
        let wish = highgui::wait_key_ex(1).map_or(Wish::Continue, window_key);
        if wish != Wish::Continue {
            return wish;
        }
        // Closing the window also stops the playback.
        match highgui::get_window_property(WINDOW, highgui::WND_PROP_VISIBLE) {
            Ok(visible) if visible < 1.0 => Wish::Stop,
            _ => Wish::Continue,
        }
    }
}

impl Screen for Window {
    fn show(&mut self, video: &str, resolution: &str, picture: &Mat) -> Wish {
        let title = format!("ciphercast — {video} — {resolution}");
        if title != self.title {
            let _ = highgui::set_window_title(WINDOW, &title);
            // Fit within 1280×720, keeping the aspect ratio.
            let (w, h) = (picture.cols().max(1), picture.rows().max(1));
            let scale = f64::min(MAX_WINDOW.0 as f64 / w as f64, MAX_WINDOW.1 as f64 / h as f64).min(1.0);
            let _ =
                highgui::resize_window(WINDOW, ((w as f64 * scale) as i32).max(1), ((h as f64 * scale) as i32).max(1));
            self.title = title;
        }
        if highgui::imshow(WINDOW, picture).is_err() {
            return Wish::Stop;
        }
        self.keys()
    }
    fn poll(&mut self) -> Wish {
        self.keys()
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        let _ = highgui::destroy_window(WINDOW);
        // Let the window system process the close.
        for _ in 0..5 {
            let _ = highgui::wait_key(1);
        }
    }
}

/// Rows kept at the bottom of the terminal for chat and events.
const EVENT_ROWS: u16 = 6;

/// 24-bit colour half-block rendering: each character cell shows two pixels,
/// the upper as foreground of `▀`, the lower as background.
struct TerminalScreen {
    printer: Printer,
    size: (u16, u16),
    resized: Mat,
    buffer: String,
}

impl TerminalScreen {
    fn open(printer: Printer) -> TerminalScreen {
        let size = crossterm::terminal::size().ok().filter(|&(c, r)| c >= 10 && r > EVENT_ROWS + 2).unwrap_or((80, 24));
        // Raw mode: keys arrive one at a time, Ctrl-C too (it stops the
        // playback only). Events scroll in the bottom rows, under the picture.
        terminal::enter_player(size.1, EVENT_ROWS);
        TerminalScreen { printer, size, resized: Mat::default(), buffer: String::new() }
    }
}

impl Screen for TerminalScreen {
    fn show(&mut self, video: &str, resolution: &str, picture: &Mat) -> Wish {
        let (cols, rows) = self.size;
        let text_rows = (rows - EVENT_ROWS - 1) as f64;
        let (w, h) = (picture.cols().max(1) as f64, picture.rows().max(1) as f64);
        // Two pixels per cell vertically; cells are about twice as tall as wide.
        let scale = f64::min(cols as f64 / w, text_rows * 2.0 / h);
        let (out_w, out_h) = (((w * scale) as i32).max(1), (((h * scale) as i32) & !1).max(2));
        if resize(picture, &mut self.resized, Size::new(out_w, out_h), 0.0, 0.0, INTER_AREA).is_err() {
            return Wish::Stop;
        }
        let buffer = &mut self.buffer;
        buffer.clear();
        buffer.push_str("\x1b7\x1b[H");
        let _ = std::fmt::Write::write_fmt(
            buffer,
            format_args!("\x1b[0m\x1b[2K{video} — {resolution} (space: pause, ←/→: 5 s, q: stop)\r\n"),
        );
        let bytes = self.resized.data_bytes().unwrap_or(&[]);
        let stride = out_w as usize * 3;
        for y in (0..out_h as usize).step_by(2) {
            for x in 0..out_w as usize {
                let top = &bytes[y * stride + x * 3..][..3];
                let bottom = &bytes[(y + 1) * stride + x * 3..][..3];
                // OpenCV stores BGR.
                let _ = std::fmt::Write::write_fmt(
                    buffer,
                    format_args!(
                        "\x1b[38;2;{};{};{}m\x1b[48;2;{};{};{}m▀",
                        top[2], top[1], top[0], bottom[2], bottom[1], bottom[0]
                    ),
                );
            }
            buffer.push_str("\x1b[0m\r\n");
        }
        buffer.push_str("\x1b8");
        self.printer.write_raw(buffer);
        terminal_keys()
    }
    fn poll(&mut self) -> Wish {
        terminal_keys()
    }
}

impl Drop for TerminalScreen {
    fn drop(&mut self) {
        terminal::leave_player(self.size.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG's first segments: SOI, an APP0 to skip, then a SOF0 declaring `width`×`height`.
    fn header(width: u16, height: u16) -> Vec<u8> {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0xFF, 0xC0, 0, 11, 8];
        jpeg.extend_from_slice(&height.to_be_bytes());
        jpeg.extend_from_slice(&width.to_be_bytes());
        jpeg.extend_from_slice(&[1, 1, 0x11, 0]);
        jpeg
    }

    #[test]
    fn the_declared_size_is_read_before_decoding_and_a_bomb_is_refused() {
        assert_eq!(declared_size(&header(640, 480)), Some((640, 480)));
        assert!(decode(&header(32767, 32767), PictureLimit::default()).unwrap_err().contains("32767×32767"));
        assert_eq!(declared_size(b"not a jpeg"), None);
        assert_eq!(declared_size(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]), None);
        assert_eq!(declared_size(&header(640, 480)[..10]), None, "cut short");
        let mut jpeg = Vector::<u8>::new();
        let picture =
            Mat::new_rows_cols_with_default(48, 64, opencv::core::CV_8UC3, opencv::core::Scalar::all(9.0)).unwrap();
        opencv::imgcodecs::imencode(".jpg", &picture, &mut jpeg, &Vector::new()).unwrap();
        assert_eq!(declared_size(jpeg.as_slice()), Some((64, 48)), "OpenCV's own JPEGs");
        assert_eq!(decode(jpeg.as_slice(), PictureLimit::default()).unwrap().cols(), 64);
    }

    #[test]
    fn a_stream_may_send_pictures_up_to_twice_its_plans_tallest_height() {
        let plan = PictureLimit::for_plan(["240p", "720p", "nonsense", "0p"]);
        assert_eq!(plan, PictureLimit { width: 4096, height: 1440 });
        assert_eq!(PictureLimit::for_plan(["240p"]), PictureLimit { width: 1920, height: 480 });
        assert_eq!(PictureLimit::for_plan(["4000p"]), PictureLimit::default(), "never over 4096");
        assert_eq!(PictureLimit::for_plan(["hd"]), PictureLimit::default(), "no height named");
        let small = PictureLimit::for_plan(["240p"]);
        assert!(decode(&header(1920, 1080), small).unwrap_err().contains("over the 1920×480 this stream allows"));
    }
}
