//! What the bench prints and how it summarises: the table of results on
//! stdout, and the small statistics the phases share (milliseconds, median,
//! nearest-rank percentile). Runs on the bench's main thread; no I/O but
//! the table.

use std::time::Duration;

use serde_json::Value;

/// A duration in milliseconds, with its fraction.
pub(super) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The median of unsorted values (0 for none).
pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(&values, 50.0)
}

/// The `p`-th percentile of sorted values (nearest rank; 0 for none).
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints one line per headline figure of `results` (the results.json
/// value); a figure missing from a `--only` run prints as `null`.
pub(super) fn print_table(results: &Value) {
    let get = |path: &[&str]| {
        let mut value = results;
        for key in path {
            value = &value[*key];
        }
        match value {
            Value::Number(n) => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
            other => other.to_string(),
        }
    };
    let rows = [
        ("joins: clients", get(&["join", "clients"])),
        ("joins: seconds until every registry is complete", get(&["join", "seconds"])),
        (
            "chat idle: p50 / p99 / max ms",
            format!(
                "{} / {} / {}",
                get(&["chat", "idle", "p50_ms"]),
                get(&["chat", "idle", "p99_ms"]),
                get(&["chat", "idle", "max_ms"])
            ),
        ),
        (
            "chat with streams: p50 / p99 / max ms",
            format!(
                "{} / {} / {}",
                get(&["chat", "streams", "p50_ms"]),
                get(&["chat", "streams", "p99_ms"]),
                get(&["chat", "streams", "max_ms"])
            ),
        ),
        (
            "crypto: seal / open / keygen ms",
            format!(
                "{} / {} / {}",
                get(&["chat", "crypto_ms", "seal"]),
                get(&["chat", "crypto_ms", "open"]),
                get(&["chat", "crypto_ms", "keygen_median"])
            ),
        ),
        ("viewers of one video in real time", get(&["viewers", "same_video_realtime_max"])),
        ("viewers of distinct cold videos in real time", get(&["viewers", "distinct_videos_realtime_max_cold"])),
        ("server CPU ms per delivered frame", get(&["viewers", "server_cpu_ms_per_frame"])),
        (
            "cold top-resolution frame: decode / JPEG encode ms",
            format!(
                "{} / {}",
                get(&["viewers", "cold_frame_ms", "decode"]),
                get(&["viewers", "cold_frame_ms", "encode"])
            ),
        ),
        ("server memory KiB per idle client", get(&["server", "rss_kib_per_idle_client"])),
    ];
    println!("{:<50} value", "measure");
    for (name, value) in rows {
        println!("{name:<50} {value}");
    }
    if let Some(per_join) = results["join"]["bytes_per_join_at"].as_object() {
        for (n, bytes) in per_join {
            println!("{:<50} {}", format!("server bytes for join number {n}"), bytes);
        }
    }
}
