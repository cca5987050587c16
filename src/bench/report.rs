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
    // Several figures of one section on one line, as `a / b / c`.
    let several = |section: &[&str], keys: &[&str]| {
        let values: Vec<String> = keys.iter().map(|key| get(&[section, &[*key]].concat())).collect();
        values.join(" / ")
    };
    let concurrent = &results["chat"]["concurrent"];
    let senders = concurrent["senders"].as_u64().map(|n| format!(" {n} senders")).unwrap_or_default();
    let concurrent_clients = concurrent["clients"].as_u64().map(|n| format!(" ({n} clients)")).unwrap_or_default();
    let rows = [
        ("joins: clients".to_string(), get(&["join", "clients"])),
        ("joins: seconds until every registry is complete".into(), get(&["join", "seconds"])),
        ("chat idle: p50 / p99 / max ms".into(), several(&["chat", "idle"], &["p50_ms", "p99_ms", "max_ms"])),
        (
            "chat with streams: p50 / p99 / max ms".into(),
            several(&["chat", "streams"], &["p50_ms", "p99_ms", "max_ms"]),
        ),
        (
            format!("chat p50 / p99,{senders}{concurrent_clients}"),
            format!(
                "{} ms, {} messages/s",
                several(&["chat", "concurrent"], &["p50_ms", "p99_ms"]),
                get(&["chat", "concurrent", "messages_per_second"])
            ),
        ),
        (
            "chat p50 ms without / with 5 browsers on the page".into(),
            several(&["chat", "web"], &["plain_p50_median_ms", "web_p50_median_ms"]),
        ),
        ("crypto: seal / open / keygen ms".into(), several(&["chat", "crypto_ms"], &["seal", "open", "keygen_median"])),
        ("viewers of one video in real time".into(), get(&["viewers", "same_video_realtime_max"])),
        ("viewers of distinct cold videos in real time".into(), get(&["viewers", "distinct_videos_realtime_max_cold"])),
        ("server CPU ms per delivered frame".into(), get(&["viewers", "server_cpu_ms_per_frame"])),
        (
            "viewers of a prepared video at distinct positions".into(),
            get(&["viewers", "distinct_prepared_realtime_max"]),
        ),
        ("server CPU ms per prepared frame".into(), get(&["viewers", "server_cpu_ms_per_frame_prepared"])),
        ("server MiB with 100 prepared streams".into(), get(&["viewers", "server_rss_mib_prepared_100"])),
        ("prepare: source frames per second (all renditions)".into(), get(&["prepare", "frames_per_second"])),
        ("store MB per minute of video".into(), get(&["prepare", "store_mb_per_minute"])),
        (
            "cold top-resolution frame: decode / JPEG encode ms".into(),
            several(&["viewers", "cold_frame_ms"], &["decode", "encode"]),
        ),
        ("server memory KiB per idle client".into(), get(&["server", "rss_kib_per_idle_client"])),
        (
            "adaptive, unthrottled: seconds to the top / last".into(),
            several(&["adaptive", "unthrottled"], &["seconds_to_top_median", "last"]),
        ),
        (
            "adaptive at 12 Mbit/s: late % / last".into(),
            several(&["adaptive", "max_kbps_12000"], &["late_percent_median", "last"]),
        ),
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
