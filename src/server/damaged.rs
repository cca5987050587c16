//! Damaged frames, as a streaming thread meets them: each is skipped, and
//! each run of them is logged once, not frame by frame.

use log::warn;

/// The damaged frames a stream skipped, logged once per run of them.
pub(crate) struct Damaged<'a> {
    pub(crate) video: &'a str,
    /// The current run: its first frame and its length.
    pub(crate) run: Option<(u32, u32)>,
}

impl Damaged<'_> {
    pub(crate) fn skip(&mut self, index: u32) {
        match &mut self.run {
            Some((_, length)) => *length += 1,
            None => {
                warn!("{}: frame {index} does not decode, skipping it", self.video);
                self.run = Some((index, 1));
            }
        }
    }

    /// A frame decoded (or the stream ended): the run, if any, is over.
    pub(crate) fn end_run(&mut self) {
        if let Some((first, length)) = self.run.take()
            && length > 1
        {
            warn!("{}: skipped {length} damaged frames, {first}–{}", self.video, first + length - 1);
        }
    }
}
