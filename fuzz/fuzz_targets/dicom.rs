//! DICOM series reader and SEG reader: one or two files in a folder (the first byte chooses
//! how the rest is split), listed, read as a series, and a SEG read onto what was read.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("segvol-fuzz-dicom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    let parts: Vec<&[u8]> = if sel & 1 == 1 && body.len() > 2 {
        let cut = (usize::from(sel >> 1) * body.len() / 128).min(body.len());
        vec![&body[..cut], &body[cut..]]
    } else {
        vec![body]
    };
    for (i, p) in parts.iter().enumerate() {
        if std::fs::write(dir.join(format!("f{i}.dcm")), p).is_err() {
            return;
        }
    }
    let _ = segvol_io::dicom::list_series(&dir);
    if let Ok(s) = segvol_io::dicom::read_series(&dir, &segvol_io::dicom::SeriesPick::Only) {
        let dims = s.volume.dims();
        let _ = segvol_io::dicom::read_seg(dir.join("f0.dcm"), &s.info, dims);
    }
});
