use super::*;
use std::path::PathBuf;

fn dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hookstream-spool-{label}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new().expect("metrics"))
}

fn record(id: usize) -> SpooledRecord {
    SpooledRecord::new(
        "livesession",
        Some("js_error"),
        "webhooks.livesession.js_error",
        Some("visitor"),
        format!("value-{id}").into_bytes(),
        &[("hookstream-event-id", format!("e-{id}").as_bytes())],
        false,
    )
}

fn values(spool: &Spool) -> Vec<String> {
    let mut ids = spool.take(usize::MAX, u64::MAX);
    ids.sort();
    ids.into_iter()
        .filter_map(|(id, _)| spool.read(id).ok())
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

fn later() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(5)
}

/// Appends `record`, without a first attempt; its id.
async fn append(spool: &Arc<Spool>, record: &SpooledRecord) -> Result<SpoolId, SpoolError> {
    let reservation = spool.reserve(record)?;
    spool
        .append(reservation, None, later())
        .await
        .map_err(|refused| refused.error)?;
    let state = spool.shared.state.lock();
    let newest = state
        .segments
        .iter()
        .flat_map(|(&segment, s)| {
            s.entries
                .keys()
                .map(move |&offset| SpoolId { segment, offset })
        })
        .max()
        .expect("registered");
    Ok(newest)
}

/// The one segment file of `dir` holding records.
fn segment_file(dir: &Path) -> PathBuf {
    let (seqs, _) = directory::list(dir).expect("listed");
    seqs.iter()
        .map(|s| directory::segment_path(dir, *s))
        .find(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .expect("a segment with records")
}

#[tokio::test]
async fn appended_records_survive_a_reopen_and_acked_ones_do_not_come_back() {
    let dir = dir("reopen");
    let spool = Spool::open(&dir, 1 << 20, metrics()).expect("opens");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(append(&spool, &record(i)).await.expect("appended"));
    }
    spool.ack(&ids[..2]);
    drop(spool);
    let spool = Spool::open(&dir, 1 << 20, metrics()).expect("reopens");
    assert_eq!(values(&spool), ["value-2", "value-3", "value-4"]);
    let record = spool.read(ids[3]).expect("readable");
    assert!(record
        .headers
        .iter()
        .any(|(k, v)| k == "hookstream-spooled-at" && v.ends_with(b"Z")));
}

#[tokio::test]
async fn a_second_process_on_the_same_directory_is_refused_naming_it() {
    let dir = dir("lock");
    let _first = Spool::open(&dir, 1 << 20, metrics()).expect("opens");
    let err = Spool::open(&dir, 1 << 20, metrics())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(&dir.display().to_string()) && err.contains("in use"),
        "{err}"
    );
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_everything_before_it_kept() {
    let dir = dir("torn");
    let spool = Spool::open(&dir, 1 << 20, metrics()).expect("opens");
    for i in 0..3 {
        append(&spool, &record(i)).await.expect("appended");
    }
    drop(spool);
    let file = segment_file(&dir);
    let len = std::fs::metadata(&file).expect("exists").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(len - 7))
        .expect("cut");
    let metrics = metrics();
    let spool = Spool::open(&dir, 1 << 20, metrics.clone()).expect("starts");
    assert_eq!(values(&spool), ["value-0", "value-1"]);
    assert_eq!(metrics.spool.corrupt.get(), 0, "a torn tail is not damage");
    assert!(std::fs::metadata(&file).expect("kept").len() < len - 7);
}

#[tokio::test]
async fn a_flipped_byte_costs_its_record_which_is_counted_and_kept_aside() {
    let dir = dir("flip");
    let spool = Spool::open(&dir, 1 << 20, metrics()).expect("opens");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(append(&spool, &record(i)).await.expect("appended"));
    }
    drop(spool);
    let file = segment_file(&dir);
    let mut bytes = std::fs::read(&file).expect("read");
    let middle = ids[1].offset as usize + frame::HEADER_LEN + 10;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).expect("damaged");
    let metrics = metrics();
    let spool = Spool::open(&dir, 1 << 20, metrics.clone()).expect("starts");
    assert_eq!(values(&spool), ["value-0", "value-2"]);
    assert_eq!(metrics.spool.corrupt.get(), 1);
    let aside: Vec<_> = std::fs::read_dir(dir.join("corrupt"))
        .expect("corrupt/")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(aside.len(), 1);
}

#[tokio::test]
async fn max_bytes_is_held_the_spool_says_it_is_full_and_space_comes_back_once_records_are_forwarded(
) {
    let dir = dir("full");
    let one = {
        let mut framed = Vec::new();
        frame::encode(&record(0).encode(), &mut framed);
        framed.len() as u64
    };
    let spool = Spool::open(&dir, one * 3 + one / 2, metrics()).expect("opens");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(append(&spool, &record(i)).await.expect("room"));
    }
    assert!(matches!(
        append(&spool, &record(3)).await,
        Err(SpoolError::Full(_))
    ));
    let on_disk: u64 = std::fs::read_dir(&dir)
        .expect("listed")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(on_disk <= one * 3 + one / 2, "{on_disk}");
    assert!(
        matches!(spool.accepting(), Err(SpoolError::Full(_))),
        "full, though the bytes held are below max_bytes"
    );
    spool.ack(&ids);
    assert!(spool.accepting().is_ok(), "forwarded records free room");
    append(&spool, &record(4)).await.expect("room again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_syncs() {
    let dir = dir("group");
    let metrics = metrics();
    let spool = Spool::open(&dir, 1 << 26, metrics.clone()).expect("opens");
    let appends = (0..500).map(|i| {
        let spool = spool.clone();
        tokio::spawn(async move { append(&spool, &record(i)).await.map(|_| ()) })
    });
    for append in futures_util::future::join_all(appends).await {
        append.expect("task").expect("appended");
    }
    let syncs = metrics.spool.sync_duration.get_sample_count();
    assert!(syncs < 500, "{syncs} syncs for 500 appends");
    assert_eq!(values(&spool).len(), 500);
}

#[tokio::test]
async fn a_record_the_broker_refuses_waits_longer_each_time_without_holding_back_the_others() {
    let dir = dir("park");
    let spool = Spool::open(&dir, 1 << 20, metrics()).expect("opens");
    let refused = append(&spool, &record(0)).await.expect("appended");
    let other = append(&spool, &record(1)).await.expect("appended");
    let start = std::time::Instant::now();
    let taken = spool.take_at(start, usize::MAX, u64::MAX);
    assert_eq!(taken.len(), 2);

    assert_eq!(spool.park_at(start, &[refused]), FIRST_PARKED);
    spool.release(&[other], false);
    let ids = |taken: Vec<(SpoolId, bool)>| taken.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(
        ids(spool.take_at(start, usize::MAX, u64::MAX)),
        [other],
        "the other record goes on"
    );
    spool.release(&[other], false);
    assert_eq!(
        ids(spool.take_at(start + FIRST_PARKED, usize::MAX, u64::MAX)),
        [refused, other],
        "tried again once its wait is over"
    );
    let later = start + FIRST_PARKED;
    assert_eq!(spool.park_at(later, &[refused]), FIRST_PARKED * 2);
    for _ in 0..20 {
        spool.park_at(later, &[refused]);
    }
    assert_eq!(
        spool.park_at(later, &[refused]),
        MAX_PARKED,
        "the wait is bounded"
    );

    drop(spool);
    let spool = Spool::open(&dir, 1 << 20, metrics()).expect("reopens");
    assert_eq!(
        values(&spool),
        ["value-0", "value-1"],
        "a refused record is kept, never dropped"
    );
}

#[tokio::test]
async fn a_parked_record_does_not_pin_the_bytes_forwarded_around_it() {
    let dir = dir("pinned");
    let one = {
        let mut framed = Vec::new();
        frame::encode(&record(0).encode(), &mut framed);
        framed.len() as u64
    };
    let spool = Spool::open(&dir, one * 4, metrics()).expect("opens");
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(append(&spool, &record(i)).await.expect("room"));
    }
    spool.take(usize::MAX, u64::MAX);
    spool.park(&ids[1..2]);
    spool.ack(&[ids[0], ids[2], ids[3]]);
    assert!(
        spool.accepting().is_ok(),
        "three records' room is free again"
    );
    for i in 4..7 {
        append(&spool, &record(i))
            .await
            .expect("room for three more");
    }
    drop(spool);
    let metrics = metrics();
    let spool = Spool::open(&dir, one * 4, metrics.clone()).expect("reopens");
    assert_eq!(
        metrics.spool.bytes.get() as u64,
        one * 4,
        "only live bytes count"
    );
    assert_eq!(values(&spool).len(), 4);
}

#[tokio::test]
async fn full_clears_once_a_smaller_webhook_fits_and_only_live_bytes_count() {
    let dir = dir("full-clears");
    let one = {
        let mut framed = Vec::new();
        frame::encode(&record(0).encode(), &mut framed);
        framed.len() as u64
    };
    let spool = Spool::open(&dir, one * 3, metrics()).expect("opens");
    append(&spool, &record(0)).await.expect("room");
    let big = SpooledRecord {
        value: vec![b'x'; (one * 3) as usize],
        ..record(1)
    };
    assert!(matches!(
        append(&spool, &big).await,
        Err(SpoolError::Full(_))
    ));
    assert!(matches!(spool.accepting(), Err(SpoolError::Full(_))));
    append(&spool, &record(2)).await.expect("a small one fits");
    assert!(
        spool.accepting().is_ok(),
        "an append succeeded: the spool is not full for readiness"
    );
}

#[tokio::test]
async fn a_copy_of_a_segment_under_a_name_that_is_not_canonical_is_ignored() {
    let dir = dir("names");
    let spool = Spool::open(&dir, 1 << 20, metrics()).expect("opens");
    for i in 0..3 {
        append(&spool, &record(i)).await.expect("appended");
    }
    drop(spool);
    let file = segment_file(&dir);
    std::fs::copy(&file, dir.join("segment-0.log")).expect("copied");
    std::fs::copy(&file, dir.join("segment-0000000000000000.log.bak")).expect("copied");
    let metrics = metrics();
    let spool = Spool::open(&dir, 1 << 20, metrics.clone()).expect("reopens");
    assert_eq!(values(&spool).len(), 3);
    assert_eq!(metrics.spool.records.get(), 3);
    let status = status::status(&dir).expect("status");
    assert_eq!(status.values().map(|t| t.records).sum::<u64>(), 3);
}

#[tokio::test]
async fn segment_numbers_do_not_wrap() {
    let dir = dir("wrap");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(directory::segment_path(&dir, u64::MAX), b"").expect("file");
    let err = Spool::open(&dir, 1 << 20, metrics())
        .err()
        .expect("refused");
    assert!(matches!(err, OpenError::Exhausted { .. }), "{err}");
}

#[tokio::test]
async fn a_segment_that_cannot_be_read_is_kept_counted_and_read_once_it_can_be() {
    let dir = dir("unreadable");
    let spool = Spool::open(&dir, 1 << 20, metrics()).expect("opens");
    for i in 0..2 {
        append(&spool, &record(i)).await.expect("appended");
    }
    drop(spool);
    let file = segment_file(&dir);
    let bytes = std::fs::read(&file).expect("read");
    // A directory where the file was: reading it fails with an I/O error, not damage.
    std::fs::remove_file(&file).expect("removed");
    std::fs::create_dir(&file).expect("a directory in its place");
    let metrics = metrics();
    let spool = Spool::open(&dir, 1 << 20, metrics.clone()).expect("starts");
    assert_eq!(metrics.spool.unreadable_segments.get(), 1);
    assert_eq!(metrics.spool.corrupt.get(), 0);
    assert!(!spool.is_empty(), "it is not forgotten");
    std::fs::remove_dir(&file).expect("back");
    std::fs::write(&file, &bytes).expect("back");
    spool.retry_unreadable();
    assert_eq!(values(&spool), ["value-0", "value-1"]);
    spool.measure();
    assert_eq!(metrics.spool.unreadable_segments.get(), 0);
}

#[tokio::test]
async fn a_record_whose_segment_is_removed_is_still_read_from_the_open_file() {
    let dir = dir("removed");
    let spool = Spool::open(&dir, 1 << 20, metrics()).expect("opens");
    let id = append(&spool, &record(0)).await.expect("appended");
    std::fs::remove_dir_all(&dir).expect("removed");
    let read = spool.read(id).expect("read through the open file");
    assert_eq!(read.value, b"value-0");
    assert!(matches!(
        append(&spool, &record(1)).await,
        Err(SpoolError::Unwritable(_))
    ));
    assert!(matches!(spool.accepting(), Err(SpoolError::Unwritable(_))));
    std::fs::create_dir_all(&dir).expect("made again");
    spool.probe().await;
    assert!(spool.accepting().is_ok(), "healed without an append");
    append(&spool, &record(2)).await.expect("appended again");
    assert!(
        dir.join("doubt").is_file(),
        "the directory made anew has its doubt file again"
    );
}
