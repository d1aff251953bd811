//! The QR code of an enrollment's otpauth URI, and the one drawing of it
//! as text, used by `kauthctl 2fa enroll` and by the enrollment at login.
//!
//! Two modules share a character cell, one above the other (`▀`, `▄`, `█`
//! and space), so a code of the usual size fits an 80×24 terminal. Light
//! modules are drawn in the text colour: on the usual light-on-dark
//! terminal the code reads dark-on-light, as scanners expect.

use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code. Apps want a margin; two modules are
/// enough on a screen, and each module more costs a line and two columns.
pub const QUIET_ZONE: usize = 2;

/// The QR code of `uri`. Level L (7 % correction) keeps it small: a screen
/// has no stains or creases to correct.
pub fn code(uri: &str) -> Result<QrCode, String> {
    QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::L)
        .map_err(|e| format!("cannot make a QR code: {e}"))
}

/// The QR code of `uri` drawn as lines of text (no trailing newline).
pub fn text(uri: &str) -> Result<String, String> {
    Ok(draw(&code(uri)?))
}

/// Draws `code` with its quiet zone, two rows of modules per line.
pub fn draw(code: &QrCode) -> String {
    let width = code.width();
    let colors = code.to_colors();
    let side = width + 2 * QUIET_ZONE;
    // Whether the module at (x, y) of the drawing (quiet zone included) is
    // light; below the last row counts as dark (the terminal's background).
    let light = |x: usize, y: usize| -> bool {
        if y >= side {
            return false;
        }
        let inside = |v: usize| (QUIET_ZONE..QUIET_ZONE + width).contains(&v);
        if !inside(x) || !inside(y) {
            return true;
        }
        colors[(y - QUIET_ZONE) * width + (x - QUIET_ZONE)] == Color::Light
    };
    let mut lines = Vec::with_capacity(side.div_ceil(2));
    for y in (0..side).step_by(2) {
        let line: String = (0..side)
            .map(|x| match (light(x, y), light(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            })
            .collect();
        lines.push(line);
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URI as kauthd writes it for a long host name and user name.
    const LONG_URI: &str = "otpauth://totp/server-17.hosting.example:webmaster-account\
         ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=server-17.hosting.example";

    /// Reads a drawing back into light (true) and dark modules.
    fn modules(drawing: &str) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in drawing.lines() {
            let (top, bottom): (Vec<bool>, Vec<bool>) = line
                .chars()
                .map(|c| match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("unexpected character {other:?}"),
                })
                .unzip();
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    /// A URI of a usual length: a short host name and user name.
    const USUAL_URI: &str = "otpauth://totp/web1.example:alice\
         ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=web1.example";

    /// (columns, lines) of the drawing of `uri`.
    fn size(uri: &str) -> (usize, usize) {
        let drawing = text(uri).unwrap();
        let columns = drawing.lines().map(|l| l.chars().count()).max().unwrap();
        (columns, drawing.lines().count())
    }

    #[test]
    fn a_usual_uri_is_drawn_in_41_columns_and_21_lines() {
        assert_eq!(size(USUAL_URI), (41, 21), "{}", text(USUAL_URI).unwrap());
    }

    #[test]
    fn a_long_uri_still_fits_an_80_by_24_terminal() {
        let (columns, lines) = size(LONG_URI);
        assert!(columns <= 45 && lines <= 23, "{columns}x{lines}");
    }

    #[test]
    fn the_drawing_holds_every_module_and_a_light_margin() {
        let code = code(LONG_URI).unwrap();
        let width = code.width();
        let colors = code.to_colors();
        let drawn = modules(&draw(&code));
        let side = width + 2 * QUIET_ZONE;
        for (y, row) in drawn.iter().enumerate().take(side) {
            assert_eq!(row.len(), side);
            for (x, &light) in row.iter().enumerate() {
                let margin = x < QUIET_ZONE
                    || y < QUIET_ZONE
                    || x >= QUIET_ZONE + width
                    || y >= QUIET_ZONE + width;
                let expected =
                    margin || colors[(y - QUIET_ZONE) * width + (x - QUIET_ZONE)] == Color::Light;
                assert_eq!(light, expected, "module ({x}, {y})");
            }
        }
    }
}
