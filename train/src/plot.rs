//! Loss curves of a run (`RUN/loss.png`): one panel per stage, the loss of every step in light
//! colour and its moving average over 25 steps in dark, drawn with plotters into a buffer and
//! written as PNG (text in Ubuntu Light, bundled by `epaint_default_fonts`, so no system font is
//! needed).

use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Once;

use plotters::prelude::*;

use crate::TrainError;
use crate::run::{Run, Stage, write_atomic};

const FONT: &str = "segvol-sans";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

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
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(BufWriter::new(&mut png_bytes), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|e| io(run, e))?;
        wr.write_image_data(&buf).map_err(|e| io(run, e))?;
        wr.finish().map_err(|e| io(run, e))?;
    }
    let path = run.dir.join("loss.png");
    write_atomic(&path, &png_bytes)?;
    Ok(path)
}

/// One line of [`steps_png`]: mean per step with a band (mean ± one standard deviation).
#[derive(Debug, Clone, PartialEq)]
pub struct StepSeries {
    /// Legend text.
    pub name: String,
    /// Per step: (mean, standard deviation).
    pub values: Vec<(f64, f64)>,
}

/// A metric-per-step plot (e.g. DSC and NSD after the box and each click, one line per model
/// variant), as PNG, with a legend; x runs over steps 1..n, y over 0..1.
///
/// # Errors
/// [`TrainError::Io`] naming `path`.
pub fn steps_png(
    path: &std::path::Path,
    title: &str,
    series: &[StepSeries],
) -> Result<(), TrainError> {
    register_font();
    let err = |d: String| TrainError::Io {
        path: path.to_path_buf(),
        detail: d,
    };
    let (w, h) = (720u32, 480u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw_steps(root, title, series).map_err(err)?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(BufWriter::new(&mut png_bytes), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|e| err(e.to_string()))?;
        wr.write_image_data(&buf).map_err(|e| err(e.to_string()))?;
        wr.finish().map_err(|e| err(e.to_string()))?;
    }
    write_atomic(path, &png_bytes)
}

/// [`steps_png`] as SVG (vector, for papers; text as SVG text in a sans-serif font).
///
/// # Errors
/// [`TrainError::Io`] naming `path`.
pub fn steps_svg(
    path: &std::path::Path,
    title: &str,
    series: &[StepSeries],
) -> Result<(), TrainError> {
    register_font();
    let err = |d: String| TrainError::Io {
        path: path.to_path_buf(),
        detail: d,
    };
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (720, 480)).into_drawing_area();
        draw_steps(root, title, series).map_err(err)?;
    }
    // plotters names the registered family; viewers without it fall back to sans-serif.
    let text = text.replace(
        &format!("font-family=\"{FONT}\""),
        "font-family=\"sans-serif\"",
    );
    write_atomic(path, text.as_bytes())
}

fn draw_steps<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    series: &[StepSeries],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let n = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(1)
        .max(2);
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0.8..n as f64 + 0.2, 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step (1 = box, then clicks)")
        .x_labels(n)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (k, s) in series.iter().enumerate() {
        let colour = Palette99::pick(k).to_rgba();
        let band: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1) as f64, (v.0 + v.1).min(1.0)))
            .chain(
                s.values
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, v)| ((i + 1) as f64, (v.0 - v.1).max(0.0))),
            )
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(band, colour.mix(0.15))))
            .map_err(err)?;
        let pts: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1) as f64, v.0))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
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
