//! Loss curves of a run (`RUN/loss.png`): one panel per stage, the loss of every step in light
//! colour and its moving average over 25 steps in dark, drawn with plotters into a buffer and
//! written as PNG (font and encoder from [`segvol_harness::plot`]).

use std::path::PathBuf;

use plotters::prelude::*;
use segvol_harness::plot::{FONT, encode_png, register_font};

use crate::TrainError;
use crate::run::{Run, Stage, write_atomic};

fn io(run: &Run, detail: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        path: run.dir.join("loss.png"),
        detail: detail.to_string(),
    }
}

/// Draws the loss of every stage against its step into `RUN/loss.png`.
///
/// # Errors
/// [`TrainError::Io`] when the picture cannot be drawn or written.
pub fn loss_curves(run: &Run) -> Result<PathBuf, TrainError> {
    register_font();
    let lines = run.log_lines();
    let series: Vec<(Stage, Vec<(f64, f64)>)> = Stage::ALL
        .iter()
        .map(|&st| {
            let pts = lines
                .iter()
                .filter(|l| l["stage"] == st.name())
                .filter_map(|l| Some((l["step"].as_f64()?, l["loss"].as_f64()?)))
                .filter(|(_, y)| y.is_finite())
                .collect::<Vec<_>>();
            (st, pts)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let (w, h) = (480 * series.len().max(1) as u32, 360u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| io(run, e))?;
        let panels = root.split_evenly((1, series.len().max(1)));
        for ((stage, pts), area) in series.iter().zip(panels.iter()) {
            let x_max = pts.iter().map(|p| p.0).fold(1.0, f64::max);
            let y_max = pts.iter().map(|p| p.1).fold(0.0, f64::max) * 1.05 + 1e-6;
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{} loss", stage.name()), (FONT, 20))
                .margin(10)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)
                .map_err(|e| io(run, e))?;
            chart
                .configure_mesh()
                .x_desc("step")
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .draw()
                .map_err(|e| io(run, e))?;
            chart
                .draw_series(LineSeries::new(
                    pts.iter().copied(),
                    RGBColor(170, 200, 235),
                ))
                .map_err(|e| io(run, e))?;
            let k = 25usize;
            let avg: Vec<(f64, f64)> = (0..pts.len())
                .map(|i| {
                    let lo = i.saturating_sub(k - 1);
                    let win = &pts[lo..=i];
                    (
                        pts[i].0,
                        win.iter().map(|p| p.1).sum::<f64>() / win.len() as f64,
                    )
                })
                .collect();
            chart
                .draw_series(LineSeries::new(avg, RGBColor(20, 60, 150).stroke_width(2)))
                .map_err(|e| io(run, e))?;
        }
        root.present().map_err(|e| io(run, e))?;
    }
    let png_bytes = encode_png(&buf, w, h).map_err(|e| io(run, e))?;
    let path = run.dir.join("loss.png");
    write_atomic(&path, &png_bytes)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_panel_per_stage_with_text() {
        let tmp = tempfile::tempdir().expect("tmp");
        let run = Run::create(
            &tmp.path().join("r"),
            crate::TrainConfig::default(),
            crate::data::Split::default(),
        )
        .expect("run");
        for step in 1..=40 {
            let loss = 2.0 / f64::from(step);
            run.log(&serde_json::json!({"stage": "base-box", "step": step, "loss": loss}))
                .expect("log");
            run.log(&serde_json::json!({"stage": "corrector", "step": step, "loss": loss + 1.0}))
                .expect("log");
        }
        let p = loss_curves(&run).expect("plot");
        let dec = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&p).expect("png"),
        ));
        let mut reader = dec.read_info().expect("info");
        let (w, h) = (reader.info().width, reader.info().height);
        assert_eq!((w, h), (960, 360));
        let mut px = vec![0u8; reader.output_buffer_size().expect("size")];
        reader.next_frame(&mut px).expect("frame");
        // Dark pixels: the average curve (blue) and the text.
        let dark = px.chunks(3).filter(|c| c.iter().all(|&v| v < 100)).count();
        let blue = px.chunks(3).filter(|c| c[2] > 120 && c[0] < 60).count();
        assert!(dark > 500, "{dark}");
        assert!(blue > 200, "{blue}");
    }
}
