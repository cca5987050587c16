//! `ciphercast videos`: the files the server's library is made of. Runs on
//! the main thread of `ciphercast videos` (and of `ciphercast bench`, for
//! its own clips); nothing here touches a socket.
//!
//! Two ways to fill a library, one file each:
//! - [`demo`]: draws the demo clips `Video_1` and `Video_2` at every height.
//! - [`ladder`]: `--from FILE…`, the resolution ladder of a file you bring
//!   (`NAME_<height>p.mp4` for every height), with everything checked
//!   before the work starts; [`transcode`] does the work, one pass over the
//!   source for every height, and `progress` shows it (a bar on a
//!   terminal, one line per file when piped).
//!
//! Both name their files as the library expects (`NAME_<height>p.mp4`, see
//! [`crate::shared::video::parse_file_name`]).

pub mod demo;
pub mod ladder;
mod progress;
pub mod transcode;

pub use demo::{GenerateError, Spec, VIDEO_NAMES, generate, has_videos};
