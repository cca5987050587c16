//! The prepared library end to end: a real server with a store prepares
//! tiny generated clips in the background; viewers over real sockets get the
//! same frames prepared as unprepared; a damaged store file is rebuilt, a
//! changed source prepared again, a copy prepared once, a store that cannot
//! be written only warned about, and `videos --clean-store` removes what
//! no source needs.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use ciphercast::server::Config;
use ciphercast::shared::frame::FrameKind;
use ciphercast::shared::message::{ClientMessage, ServerMessage, VideoInfo, decode};
use ciphercast::shared::video::{EndReason, FrameHeader, Pace};
use support::{Process, TestClient, TestServer, clips, identity, wait_until};

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ciphercast-store-test-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of the generated clips (Video_1 and Video_2 at 24p, 48p, 96p, 2 s at 10 fps).
fn library(tag: &str) -> PathBuf {
    let dir = tempdir(tag);
    for file in fs::read_dir(clips(2)).unwrap().flatten() {
        fs::copy(file.path(), dir.join(file.file_name())).unwrap();
    }
    dir
}

fn server(videos: &Path, store: Option<PathBuf>) -> TestServer {
    TestServer::start(Config { videos: videos.to_path_buf(), store, ..Config::default() })
}

fn list(client: &mut TestClient) -> Vec<VideoInfo> {
    client.send(&ClientMessage::ListVideos);
    match client.recv_until("video_list", |m| matches!(m, ServerMessage::VideoList { .. })) {
        ServerMessage::VideoList { videos } => videos,
        _ => unreachable!(),
    }
}

/// Waits until every video lists as prepared.
fn wait_prepared(client: &mut TestClient) {
    wait_until("every video prepared", || list(client).iter().all(|v| v.prepared == Some(1.0)));
}

/// One frame as a viewer got it, without the stream id (which differs from playback to playback).
#[derive(PartialEq)]
struct Picture {
    sequence: u32,
    pts_micros: u64,
    resolution: String,
    jpeg: Vec<u8>,
}

/// One playback: each frame, and how it ended.
fn play(client: &mut TestClient, video: &str, start: Option<u32>) -> (Vec<Picture>, ServerMessage) {
    client.send(&ClientMessage::Play { video: video.into(), pace: Pace::None, start, plan: None });
    let mut frames = Vec::new();
    for _ in 0..10_000 {
        let frame = client.read_frame();
        if frame.kind == FrameKind::Video {
            let (header, jpeg) = FrameHeader::decode(&frame.payload).expect("frame header");
            let FrameHeader { sequence, pts_micros, resolution, .. } = header;
            frames.push(Picture { sequence, pts_micros, resolution, jpeg: jpeg.to_vec() });
            continue;
        }
        if let end @ ServerMessage::StreamEnd { .. } = decode::<ServerMessage>(&frame).expect("control message") {
            return (frames, end);
        }
    }
    panic!("no stream end");
}

fn store_files(store: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(store)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn prepared_and_unprepared_playback_send_the_same_frames() {
    let videos = library("same");
    let plain = server(&videos, None);
    let (mut viewer, _) = TestClient::join(plain.addr, "viewer", identity(0));
    assert!(list(&mut viewer).iter().all(|v| v.prepared.is_none()), "no store: no `prepared`");
    let (decoded, _) = play(&mut viewer, "Video_1", None);

    let store = videos.join(".ciphercast");
    let prepared = server(&videos, Some(store.clone()));
    let (mut viewer, _) = TestClient::join(prepared.addr, "viewer", identity(0));
    wait_prepared(&mut viewer);
    assert_eq!(store_files(&store, "frames").len(), 6, "one entry per file");
    assert_eq!(list(&mut viewer).len(), 2, "the store is not listed as a video");
    let (served, end) = play(&mut viewer, "Video_1", None);
    assert_eq!(served.len(), 20);
    assert!(served == decoded, "the store sends exactly what decoding sends");
    assert!(matches!(end, ServerMessage::StreamEnd { reason: EndReason::Finished, frames: 20, total: Some(20), .. }));

    // A viewer may start anywhere; the plan applies from there.
    let (from_middle, _) = play(&mut viewer, "Video_1", Some(13));
    let sequences: Vec<u32> = from_middle.iter().map(|p| p.sequence).collect();
    assert_eq!(sequences, (13..20).collect::<Vec<_>>());
    assert!(from_middle.iter().all(|p| p.resolution == "96p"), "the last third is 96p");
    assert!(from_middle[..] == served[13..], "same frames from the middle");

    // Prepared frames come from the store alone: with the files' bytes
    // destroyed (size and time kept, so they count as unchanged), it plays on.
    for height in [24, 48, 96] {
        let file = videos.join(format!("Video_1_{height}p.mp4"));
        let modified = fs::metadata(&file).unwrap().modified().unwrap();
        let size = fs::metadata(&file).unwrap().len() as usize;
        fs::write(&file, vec![0u8; size]).unwrap();
        fs::File::options().write(true).open(&file).unwrap().set_modified(modified).unwrap();
    }
    let (from_store, _) = play(&mut viewer, "Video_1", None);
    assert!(from_store == served, "streamed without opening the video files");

    let (none, end) = play(&mut viewer, "Video_1", Some(20));
    assert!(none.is_empty());
    assert!(matches!(end, ServerMessage::StreamEnd { reason: EndReason::Error, .. }), "{end:?}");
}

#[test]
fn a_damaged_store_file_is_rebuilt_and_a_changed_source_prepared_again() {
    let videos = library("rebuild");
    let store = tempdir("rebuild-store");
    let mut first = server(&videos, Some(store.clone()));
    let (mut viewer, _) = TestClient::join(first.addr, "viewer", identity(0));
    wait_prepared(&mut viewer);
    let (before, _) = play(&mut viewer, "Video_2", None);
    drop(viewer);
    first.stop();

    // Cut every store file short, and flip one byte in the middle of another.
    let entries = store_files(&store, "frames");
    let bytes = fs::read(&entries[0]).unwrap();
    fs::write(&entries[0], &bytes[..bytes.len() / 2]).unwrap();
    let mut bytes = fs::read(&entries[1]).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x55;
    fs::write(&entries[1], &bytes).unwrap();

    let second = server(&videos, Some(store.clone()));
    let (mut viewer, _) = TestClient::join(second.addr, "viewer", identity(0));
    // Until they are rebuilt, they are decoded, never streamed from the store.
    let (meanwhile, _) = play(&mut viewer, "Video_2", None);
    assert!(meanwhile == before);
    wait_prepared(&mut viewer);
    for entry in store_files(&store, "frames") {
        let size = fs::metadata(&entry).unwrap().len();
        assert!(size > 1000, "{} was rebuilt", entry.display());
    }
    let (after, _) = play(&mut viewer, "Video_2", None);
    assert!(after == before, "the rebuilt store sends the same frames");

    // Replace Video_2's 24p file with Video_1's: it is prepared again.
    let file = videos.join("Video_2_24p.mp4");
    fs::copy(videos.join("Video_1_24p.mp4"), &file).unwrap();
    wait_until("Video_2 prepared again", || {
        let (frames, _) = play(&mut viewer, "Video_2", None);
        let listed = list(&mut viewer);
        let video_2 = listed.iter().find(|v| v.name == "Video_2").unwrap();
        video_2.prepared == Some(1.0) && frames[0].jpeg != before[0].jpeg
    });
}

#[test]
fn a_copy_is_prepared_once_and_clean_store_removes_what_no_source_needs() {
    let videos = library("copy");
    fs::copy(videos.join("Video_1_96p.mp4"), videos.join("Copy.mp4")).unwrap();
    let store = tempdir("copy-store");
    let mut running = server(&videos, Some(store.clone()));
    let (mut viewer, _) = TestClient::join(running.addr, "viewer", identity(0));
    wait_prepared(&mut viewer);
    assert_eq!(store_files(&store, "frames").len(), 6, "Copy.mp4 shares Video_1_96p's entry");
    let (copy, _) = play(&mut viewer, "Copy", None);
    assert_eq!(copy.len(), 20);
    drop(viewer);
    running.stop();

    // Video_2 is gone; Video_1_96p.mp4 is gone but its copy is not.
    for height in [24, 48, 96] {
        fs::remove_file(videos.join(format!("Video_2_{height}p.mp4"))).unwrap();
    }
    fs::remove_file(videos.join("Video_1_96p.mp4")).unwrap();
    fs::write(store.join("notes.txt"), "not part of the store").unwrap();
    let store_arg = store.to_string_lossy().into_owned();
    let mut clean = Process::start(&["videos", "--clean-store", &store_arg]);
    assert_eq!(clean.finish(), 0);
    assert!(
        clean.stdout.iter().any(|l| l.starts_with("removed 3 entries") && l.contains("kept 3")),
        "{:?}",
        clean.stdout
    );
    assert_eq!(store_files(&store, "frames").len(), 3);
    assert_eq!(store_files(&store, "sources").len(), 3);
    assert!(store.join("notes.txt").exists(), "files that are not entries are left alone");

    let mut missing = Process::start(&["videos", "--clean-store", "/nonexistent/store"]);
    assert_eq!(missing.finish(), 2);
}

#[test]
fn entries_at_two_jpeg_qualities_live_side_by_side() {
    let videos = library("qualities");
    let store = tempdir("qualities-store");
    let at = |quality: u8| {
        let config =
            Config { videos: videos.clone(), store: Some(store.clone()), jpeg_quality: quality, ..Config::default() };
        let mut server = TestServer::start(config);
        let (mut viewer, _) = TestClient::join(server.addr, "viewer", identity(0));
        wait_prepared(&mut viewer);
        let (frames, _) = play(&mut viewer, "Video_1", None);
        drop(viewer);
        server.stop();
        frames
    };
    let at_80 = at(80);
    let made: Vec<(PathBuf, std::time::SystemTime)> = store_files(&store, "frames")
        .into_iter()
        .map(|p| (p.clone(), fs::metadata(&p).unwrap().modified().unwrap()))
        .collect();
    let at_60 = at(60);
    assert_eq!(store_files(&store, "frames").len(), 12, "one entry per file and quality");
    assert!(at_60[0].jpeg != at_80[0].jpeg, "another quality, other bytes");
    assert!(at(80) == at_80);
    for (path, modified) in made {
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified, "{} was not rebuilt", path.display());
    }
}

#[test]
fn a_store_that_cannot_be_written_is_warned_about_and_videos_still_play() {
    let videos = library("unwritable");
    // A directory cannot be made under a file, even by root.
    let blocker = tempdir("unwritable-store").join("a-file");
    fs::write(&blocker, "").unwrap();
    let videos_arg = videos.to_string_lossy().into_owned();
    let store_arg = blocker.join("store").to_string_lossy().into_owned();
    let (mut process, address) = Process::server(&["--videos", &videos_arg, "--store", &store_arg]);
    process.wait_for(support::Stream::Err, "cannot be created");
    let (mut viewer, _) = TestClient::join(address, "viewer", identity(0));
    let (frames, end) = play(&mut viewer, "Video_1", None);
    assert_eq!(frames.len(), 20);
    assert!(matches!(end, ServerMessage::StreamEnd { reason: EndReason::Finished, .. }));
    assert!(list(&mut viewer).iter().all(|v| v.prepared.is_none()), "listed as without a store");
    drop(viewer);
    process.child.kill().unwrap();
    let _ = process.child.wait();
}

#[test]
fn two_servers_sharing_a_store_prepare_each_file_once_and_leave_it_whole() {
    let videos = library("shared");
    let store = tempdir("shared-store");
    let one = server(&videos, Some(store.clone()));
    let two = server(&videos, Some(store.clone()));
    for address in [one.addr, two.addr] {
        let (mut viewer, _) = TestClient::join(address, "viewer", identity(0));
        wait_prepared(&mut viewer);
        let (frames, _) = play(&mut viewer, "Video_2", None);
        assert_eq!(frames.len(), 20);
    }
    assert_eq!(store_files(&store, "frames").len(), 6);
    let leftovers: Vec<_> = fs::read_dir(&store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
