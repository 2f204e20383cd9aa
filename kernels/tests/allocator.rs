//! `one_malloc_arena` with `keep_freed_memory`: a worker thread that allocates and frees more
//! than one arena heap (64 MiB) per round keeps its memory mapped, so later rounds do not
//! page-fault it in again. (glibc's per-thread arenas unmap a wholly free heap whatever the
//! trim threshold: without `one_malloc_arena` every round faults all its pages again.)
//! Its own test binary: the allocator settings are per process.
#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::unwrap_used)]

/// This thread's minor page faults (field 10 of /proc/thread-self/stat).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(7).unwrap().parse().unwrap()
}

/// One round: three 40 MiB buffers alive at once (more than one 64 MiB heap), written, freed.
/// Returns the round's page faults.
fn round() -> u64 {
    let before = minor_faults();
    let bufs: Vec<Vec<f32>> = (0..3)
        .map(|k| {
            let mut v = Vec::with_capacity(10 << 20);
            v.resize(10 << 20, k as f32);
            v
        })
        .collect();
    let sum: f32 = bufs.iter().map(|b| b[b.len() / 2]).sum();
    assert_eq!(sum, 3.0);
    drop(bufs);
    minor_faults() - before
}

#[test]
fn freed_memory_stays_mapped_on_worker_threads() {
    assert!(segvol_kernels::keep_freed_memory());
    assert!(segvol_kernels::one_malloc_arena());
    let faults = std::thread::spawn(|| (0..4).map(|_| round()).collect::<Vec<u64>>())
        .join()
        .unwrap();
    // 120 MiB is ≥ 30 000 pages of 4 KiB: the first round faults them in (fewer with huge
    // pages); the later rounds reuse them.
    let later = faults[1..].iter().max().copied().unwrap();
    assert!(
        later * 20 < faults[0].max(1000),
        "page faults per round: {faults:?}"
    );
}
