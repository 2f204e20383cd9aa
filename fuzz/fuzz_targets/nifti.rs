//! NIfTI-1 header and data reader (`.nii`, and `.nii.gz` when the first byte is odd).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let name = if sel & 1 == 1 { "in.nii.gz" } else { "in.nii" };
    let dir = std::env::temp_dir().join(format!("segvol-fuzz-nifti-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(name);
    if std::fs::write(&path, body).is_ok() {
        let _ = segvol_io::read_nifti(&path);
        let _ = segvol_io::peek_voxels(&path);
    }
});
