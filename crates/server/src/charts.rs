//! Charts drawn on the server as SVG by `plotters`: bars only, no text inside the drawing (the
//! figure's caption and the data table beside it carry the words, so the chart needs no font
//! and a screen reader gets the numbers).

use plotters::prelude::*;

const WIDTH: u32 = 560;
const HEIGHT: u32 = 180;
const BAR: RGBColor = RGBColor(0x1f, 0x5f, 0x99);
const AXIS: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// Vertical bars, one per value, scaled to `max` (at least the largest value; 1 when all are 0).
/// An empty series draws the axes alone.
pub(crate) fn bars(values: &[f64], max: Option<f64>) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let _ = draw_bars(&root, values, max);
        let _ = root.present();
    }
    svg
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    values: &[f64],
    max: Option<f64>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (w, h) = (WIDTH as i32, HEIGHT as i32);
    let (left, bottom, top) = (8, h - 8, 8);
    root.draw(&PathElement::new(vec![(left, top), (left, bottom), (w - 8, bottom)], AXIS.stroke_width(1)))?;
    let largest = values.iter().copied().filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    let scale = max.unwrap_or(largest).max(largest);
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let n = values.len().max(1) as i32;
    // A lone bar stays a bar, not a wall.
    let slot = ((w - 16 - left) / n).min(72);
    let gap = (slot / 5).max(1);
    for (i, v) in values.iter().enumerate() {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        let height = ((v / scale) * f64::from(bottom - top)).round() as i32;
        let x0 = left + 4 + i as i32 * slot + gap / 2;
        let x1 = x0 + slot - gap;
        if height > 0 {
            root.draw(&Rectangle::new([(x0, bottom - height), (x1, bottom)], BAR.filled()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_svg_with_one_rect_per_nonzero_value_and_empty_series_draw_axes_only() {
        let svg = bars(&[1.0, 0.0, 3.0], None);
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{svg}");
        // The white background is a rect too.
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        let empty = bars(&[], None);
        assert_eq!(empty.matches("<rect").count(), 1, "{empty}");
        assert!(empty.contains("<polyline") || empty.contains("<path"), "{empty}");
        // Not a number never reaches the drawing.
        assert!(!bars(&[f64::NAN], Some(1.0)).contains("NaN"));
    }
}
