//! `.npy` parser (header, every dtype, object arrays).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = segvol_io::npy::parse_npy(std::path::Path::new("fuzz.npy"), "fuzz", data);
});
