//! QR codes for the otpauth URI: drawn in the terminal, or as PNG or SVG
//! for a panel (the caller writes those as private files: they hold the
//! secret). The code and its text drawing are kauthd's (one renderer for
//! this tool and the enrollment at login).

use kauthd::twofactor::qr::{self as shared, code};
use qrcode::render::svg;
use qrcode::Color;

/// The QR code as text, two modules per character cell.
pub fn terminal(uri: &str) -> Result<String, String> {
    shared::text(uri)
}

/// The QR code as an SVG document.
pub fn svg(uri: &str) -> Result<String, String> {
    Ok(code(uri)?
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .build())
}

/// The QR code as a PNG image.
pub fn png(uri: &str) -> Result<Vec<u8>, String> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let code = code(uri)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut data = Vec::new();
    {
        let side32 = u32::try_from(side).map_err(|_| "QR code too large".to_owned())?;
        let mut encoder = png::Encoder::new(&mut data, side32, side32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| format!("cannot encode the PNG: {e}"))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| format!("cannot encode the PNG: {e}"))?;
    }
    Ok(data)
}
