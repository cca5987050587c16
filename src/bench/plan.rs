//! How much each phase of the bench measures: the full counts, or the small
//! ones of `--quick` (which `make test` runs). Read by the phases on the
//! bench's main thread.

/// The counts of one run. The phases read their own counts from here, so
/// `--quick` changes sizes only, never what is measured.
pub(super) struct Plan {
    /// Clients of the join phase.
    pub(super) join_clients: usize,
    /// The N of each `bytes_per_join_at.N`.
    pub(super) join_checkpoints: Vec<usize>,
    /// Clients joined during the chat phases.
    pub(super) chat_clients: usize,
    /// Messages of `chat.idle` and of `chat.streams`, and of each sender of `chat.concurrent`.
    pub(super) chat_messages: usize,
    /// Clients watching a video during `chat.streams`.
    pub(super) chat_streams: usize,
    /// Viewer counts tried on one video, in order, until one fails.
    pub(super) same_video_steps: Vec<usize>,
    /// Viewer counts tried on distinct cold videos, in order, until one fails.
    pub(super) cold_steps: Vec<usize>,
    /// Length of the bench videos.
    pub(super) video_seconds: f64,
    /// Viewer counts tried on the prepared video at distinct positions, in order, until one fails.
    pub(super) prepared_steps: Vec<usize>,
    /// Length of the prepared phase's video.
    pub(super) prepared_video_seconds: f64,
    /// How long each viewer of the prepared phase watches.
    pub(super) prepared_window: std::time::Duration,
    /// Resolutions of the bench videos.
    pub(super) heights: Vec<u32>,
    /// Keys generated once and shared by every synthetic client.
    pub(super) key_pool: usize,
    /// Length of the adaptive phase's video, and its runs of each kind.
    pub(super) adaptive_video_seconds: f64,
    pub(super) adaptive_runs: usize,
    /// Rounds of `chat.web`: one run without the web page, one with it.
    pub(super) web_rounds: usize,
}

impl Plan {
    pub(super) fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                join_clients: 20,
                join_checkpoints: vec![10],
                chat_clients: 10,
                chat_messages: 20,
                chat_streams: 2,
                same_video_steps: vec![2],
                cold_steps: vec![2],
                video_seconds: 1.0,
                prepared_steps: vec![2],
                prepared_video_seconds: 2.0,
                prepared_window: std::time::Duration::from_secs(1),
                heights: vec![24, 48, 96],
                key_pool: 2,
                adaptive_video_seconds: 3.0,
                adaptive_runs: 1,
                web_rounds: 1,
            }
        } else {
            Plan {
                join_clients: 1000,
                join_checkpoints: vec![10, 100, 1000],
                chat_clients: 100,
                chat_messages: 1000,
                chat_streams: 20,
                same_video_steps: vec![10, 25, 50, 100, 200, 300, 400],
                cold_steps: vec![1, 2, 3, 4, 6, 8],
                video_seconds: 3.0,
                prepared_steps: vec![10, 25, 50, 100, 200, 400],
                prepared_video_seconds: 60.0,
                prepared_window: std::time::Duration::from_secs(10),
                heights: vec![240, 720, 1440],
                key_pool: 8,
                adaptive_video_seconds: 10.0,
                adaptive_runs: 3,
                web_rounds: 3,
            }
        }
    }
}
