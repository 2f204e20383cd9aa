//! Weight loaders' header and key parsing: SegVol (`tiny` config) from `.safetensors`, `.bin`
//! (torch zip + pickle), `.bpk` (burnpack), chosen by the first byte; the GRU corrector from
//! bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use segvol_backends::Flex;
use segvol_core::{SegVol, SegVolConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let device = Default::default();
    let ext = ["safetensors", "bin", "bpk", "pth"][usize::from(sel % 4)];
    let dir = std::env::temp_dir().join(format!("segvol-fuzz-w-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("w.{ext}"));
    if std::fs::write(&path, body).is_ok() {
        let mut model = SegVol::<Flex>::new(&SegVolConfig::preset("tiny").expect("tiny"), &device);
        let _ = segvol_core::weights::load_segvol(&mut model, &path);
    }
    let _ = segvol_gru::load_corrector_bytes::<Flex>(body, "c.safetensors", &device);
});
