//! `ciphercast bench --quick`, as `make test` runs it: outcomes only — every
//! registry complete and every frame received (the bench fails otherwise),
//! and every figure present in results.json. Never a timing.

mod support;

use support::Process;

#[test]
fn the_quick_bench_completes_and_writes_every_figure() {
    let dir = std::env::temp_dir().join(format!("ciphercast-bench-{}", std::process::id()));
    let mut bench = Process::start_command(
        std::process::Command::new(env!("CARGO_BIN_EXE_ciphercast"))
            .args(["bench", "--quick"])
            .env("CIPHERCAST_BENCH_DIR", &dir),
    );
    assert_eq!(bench.finish(), 0, "bench failed:\n{:#?}", bench.stderr);
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json");
    let results: serde_json::Value = serde_json::from_str(&text).unwrap();
    let paths: [&[&str]; 30] = [
        &["machine", "cores"],
        &["machine", "model"],
        &["join", "clients"],
        &["join", "seconds"],
        &["join", "server_bytes"],
        &["join", "bytes_per_join_at", "10"],
        &["chat", "idle", "clients"],
        &["chat", "idle", "messages"],
        &["chat", "idle", "p50_ms"],
        &["chat", "idle", "p99_ms"],
        &["chat", "idle", "max_ms"],
        &["chat", "streams", "active_streams"],
        &["chat", "streams", "p99_ms"],
        &["chat", "concurrent", "p50_ms"],
        &["chat", "concurrent", "p99_ms"],
        &["chat", "concurrent", "senders"],
        &["chat", "concurrent", "messages_per_second"],
        &["chat", "web", "plain_p50_median_ms"],
        &["chat", "web", "web_p50_median_ms"],
        &["chat", "crypto_ms", "seal"],
        &["chat", "crypto_ms", "open"],
        &["chat", "crypto_ms", "keygen_median"],
        &["viewers", "same_video_realtime_max"],
        &["viewers", "distinct_videos_realtime_max_cold"],
        &["viewers", "server_cpu_ms_per_frame"],
        &["viewers", "cold_frame_ms", "decode"],
        &["viewers", "cold_frame_ms", "encode"],
        &["server", "rss_kib_per_idle_client"],
        &["adaptive", "unthrottled", "late_percent_median"],
        &["adaptive", "max_kbps_12000", "late_percent_median"],
    ];
    for path in paths {
        let value = path.iter().fold(&results, |v, key| &v[*key]);
        assert!(!value.is_null(), "results.json lacks {}", path.join("."));
    }
    assert_eq!(results["join"]["clients"], 20);
    assert_eq!(results["chat"]["idle"]["messages"], 20, "every chat message arrived");
    // --quick: 20 messages per sender, as chat.idle's one sender.
    let concurrent = &results["chat"]["concurrent"];
    assert_eq!(concurrent["senders"], 4);
    assert_eq!(concurrent["messages"], 4 * 20, "every message of every sender arrived");
    assert!(results["join"]["bytes_per_join_at"]["10"].as_f64().unwrap() > 0.0);
    // The real client watched adaptively, and said where it ended (the
    // quick video is too short to reach the top: 3 s, a step every 2).
    for kind in ["unthrottled", "max_kbps_12000"] {
        let runs = results["adaptive"][kind]["runs"].as_array().expect("adaptive runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["frames"], 90, "every frame of the 3 s video at 30 fps");
        let last = runs[0]["last"].as_str().unwrap_or_default();
        assert!(["24p", "48p"].contains(&last), "{kind}: from 24p, 48p after two calm seconds: {last:?}");
    }
    let table = bench.stdout.join("\n");
    assert!(table.contains("viewers of one video in real time"), "{table}");
    assert!(table.contains("chat p50 / p99, 4 senders"), "{table}");
    let _ = std::fs::remove_dir_all(&dir);
}
