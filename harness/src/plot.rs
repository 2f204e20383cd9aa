//! Plots of a metric per step (DSC and NSD after the box and each click, one line per model
//! variant or run, a ±1 SD band), as PNG and SVG, drawn with plotters; text in Ubuntu Light,
//! bundled by `epaint_default_fonts`, so no system font is needed. Training's loss curves use
//! the same font and PNG encoder.

use std::io::BufWriter;
use std::sync::Once;

use plotters::prelude::*;

use crate::HarnessError;
use crate::error::write_file;

/// The font family every plot's text is drawn in (registered by [`register_font`]).
pub const FONT: &str = "segvol-sans";

/// Registers [`FONT`] with plotters (once per process; later calls do nothing).
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// `rgb` (`w` × `h`, 8-bit RGB, rows top to bottom) as PNG bytes.
///
/// # Errors
/// When `rgb` is not `w * h * 3` bytes long.
pub fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(BufWriter::new(&mut bytes), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header()?;
        wr.write_image_data(rgb)?;
        wr.finish()?;
    }
    Ok(bytes)
}

/// [`steps_png`] and [`steps_svg`] of the same plot: `out/<stem>.png` and `out/<stem>.svg`.
///
/// # Errors
/// [`HarnessError::File`] naming the file that could not be written.
pub fn steps_png_and_svg(
    out: &std::path::Path,
    stem: &str,
    title: &str,
    series: &[StepSeries],
) -> Result<(), HarnessError> {
    steps_png(&out.join(format!("{stem}.png")), title, series)?;
    steps_svg(&out.join(format!("{stem}.svg")), title, series)
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
/// [`HarnessError::File`] naming `path`.
pub fn steps_png(
    path: &std::path::Path,
    title: &str,
    series: &[StepSeries],
) -> Result<(), HarnessError> {
    register_font();
    let err = |d: String| HarnessError::file(path, d);
    let (w, h) = (720u32, 480u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw_steps(root, title, series).map_err(err)?;
    }
    let png_bytes = encode_png(&buf, w, h).map_err(|e| err(e.to_string()))?;
    write_file(path, &png_bytes)
}

/// [`steps_png`] as SVG (vector, for papers; text as SVG text in a sans-serif font).
///
/// # Errors
/// [`HarnessError::File`] naming `path`.
pub fn steps_svg(
    path: &std::path::Path,
    title: &str,
    series: &[StepSeries],
) -> Result<(), HarnessError> {
    register_font();
    let err = |d: String| HarnessError::file(path, d);
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
    write_file(path, text.as_bytes())
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
    fn a_steps_plot_has_its_lines_and_its_legend() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let series = [
            StepSeries {
                name: "segvol DSC".into(),
                values: (0..6).map(|i| (0.5 + 0.05 * f64::from(i), 0.1)).collect(),
            },
            StepSeries {
                name: "segvol NSD".into(),
                values: (0..6).map(|i| (0.3 + 0.05 * f64::from(i), 0.0)).collect(),
            },
        ];
        let png_path = tmp.path().join("p.png");
        steps_png(&png_path, "2 cases", &series).unwrap_or_else(|e| panic!("{e}"));
        let file = std::fs::File::open(&png_path).unwrap_or_else(|e| panic!("{e}"));
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((reader.info().width, reader.info().height), (720, 480));
        let mut px = vec![0u8; reader.output_buffer_size().unwrap_or(0)];
        reader.next_frame(&mut px).unwrap_or_else(|e| panic!("{e}"));
        // Coloured (not grey) pixels: the lines, their bands and the legend's marks.
        let coloured = px
            .chunks(3)
            .filter(|c| c.iter().max().unwrap_or(&0) - c.iter().min().unwrap_or(&0) > 60)
            .count();
        assert!(coloured > 1000, "{coloured}");
        // Dark pixels: the axes and the text.
        let dark = px.chunks(3).filter(|c| c.iter().all(|&v| v < 90)).count();
        assert!(dark > 500, "{dark}");

        let svg_path = tmp.path().join("p.svg");
        steps_svg(&svg_path, "2 cases", &series).unwrap_or_else(|e| panic!("{e}"));
        let svg = std::fs::read_to_string(&svg_path).unwrap_or_else(|e| panic!("{e}"));
        for text in [
            "segvol DSC",
            "segvol NSD",
            "2 cases",
            "font-family=\"sans-serif\"",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        assert!(!svg.contains(FONT), "the private font name is replaced");
        // Nothing is left behind but the two plots.
        assert_eq!(
            std::fs::read_dir(tmp.path())
                .map(Iterator::count)
                .unwrap_or(0),
            2
        );
    }

    #[test]
    fn a_buffer_of_the_wrong_size_is_an_error_not_a_picture() {
        assert!(encode_png(&[0; 11], 2, 2).is_err());
        assert!(encode_png(&[0; 12], 2, 2).is_ok_and(|b| b.starts_with(b"\x89PNG")));
    }
}
