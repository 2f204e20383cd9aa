//! Times `read_image` on each path (a NIfTI, a DICOM folder, …): the median of N reads.
//!
//!     cargo run --release -p segvol-io --example read_time -- 5 ct.nii ct_dicom_dir/
//!
//! What docs/dicom.md's reading times come from.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().ok_or("usage: read_time N PATH...")?.parse()?;
    for path in args {
        if std::path::Path::new(&path).is_dir() {
            let t = Instant::now();
            let l = segvol_io::dicom::list_series(&path)?;
            println!(
                "{path}: listing {} series took {:.3} s",
                l.len(),
                t.elapsed().as_secs_f64()
            );
        }
        let mut times = Vec::with_capacity(n);
        let mut dims = [0; 3];
        for _ in 0..n {
            let t = Instant::now();
            let v = segvol_io::read_image(&path)?;
            times.push(t.elapsed().as_secs_f64());
            dims = v.dims();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{path}: {dims:?} median {:.3} s (min {:.3}, max {:.3}, {n} reads)",
            times[n / 2],
            times[0],
            times[n - 1]
        );
    }
    Ok(())
}
