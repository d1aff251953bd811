//! QR codes for the otpauth URI: drawn in the terminal, or written as PNG
//! or SVG for a panel. The files hold the secret, so they are 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use qrcode::render::{svg, unicode};
use qrcode::{Color, EcLevel, QrCode};

fn code(uri: &str) -> Result<QrCode, String> {
    QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M)
        .map_err(|e| format!("cannot make a QR code: {e}"))
}

/// The QR code as text, two modules per character cell.
pub fn terminal(uri: &str) -> Result<String, String> {
    Ok(code(uri)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

pub fn write_svg(uri: &str, path: &Path) -> Result<(), String> {
    let image = code(uri)?
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .build();
    write_private(path, image.as_bytes())
}

pub fn write_png(uri: &str, path: &Path) -> Result<(), String> {
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
    write_private(path, &data)
}

/// Writes a file only its owner can read (it holds a secret).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("cannot set permissions on {}: {e}", path.display()))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
