//! The command line's box, click and triple parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = segvol_io::prompt::parse_box(s, Some([7, 9, 11]));
    let _ = segvol_io::prompt::parse_box(s, None);
    let _ = segvol_io::prompt::parse_clicks(s);
    let _ = segvol_io::prompt::parse_zyx(s, "--spacing");
});
