//! Challenge `.npz` reader: zip, every member's npy, pickled boxes / clicks / clicks_order.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("segvol-fuzz-npz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("in.npz");
    if std::fs::write(&path, data).is_ok() {
        let _ = segvol_io::ChallengeCase::read(&path);
        let _ = segvol_io::peek_voxels(&path);
    }
});
