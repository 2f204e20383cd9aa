//! The restricted numpy-pickle reader.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = segvol_io::pickle::read_pickle(data);
});
