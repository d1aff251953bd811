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

/// The width of the terminal the drawing is laid out for.
pub const TERMINAL_COLUMNS: usize = 80;

/// Columns between the picture and the text beside it.
const GAP: usize = 2;

/// `picture` with `text` beside it, wrapped into the columns left of an
/// 80-column terminal, so that the code, its explanation and the lines
/// after it fit one 80×24 screen. Lines of `text` past the picture's last
/// line continue below, in the same column.
pub fn beside(picture: &str, text: &str) -> String {
    let picture: Vec<&str> = picture.lines().collect();
    let width = picture.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let column = TERMINAL_COLUMNS.saturating_sub(width + GAP + 1).max(20);
    let words = wrap(text, column);
    let rows = picture.len().max(words.len());
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        let left = picture.get(i).copied().unwrap_or("");
        let line = match words.get(i) {
            Some(right) if !right.is_empty() => {
                let pad = width - left.chars().count() + GAP;
                format!("{left}{}{right}", " ".repeat(pad))
            }
            _ => left.to_owned(),
        };
        out.push(line);
    }
    out.join("\n")
}

/// `text` in lines of at most `width` characters, cut between words (a
/// longer word stays whole); each `\n` starts a new line.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let needed =
                line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
            if !line.is_empty() && needed > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
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
    fn text_beside_the_code_keeps_to_80_columns_and_leaves_the_code_whole() {
        let picture = text(USUAL_URI).unwrap();
        let words = "Scan this QR code with your authenticator app (web1.example: alice), \
                     or add the account by hand with the setup key below.\nThen type the code.";
        let both = beside(&picture, words);
        assert_eq!(both.lines().count(), picture.lines().count());
        for (line, row) in both.lines().zip(picture.lines()) {
            assert!(line.chars().count() <= TERMINAL_COLUMNS, "{line}");
            assert!(line.starts_with(row), "{line}");
        }
        let width = picture.lines().next().unwrap().chars().count();
        let said: Vec<String> = both
            .lines()
            .map(|l| l.chars().skip(width).collect::<String>().trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        assert_eq!(said.join(" "), words.replace('\n', " "));
    }

    #[test]
    fn text_longer_than_the_code_goes_on_below_it() {
        let both = beside("██\n▀▀", "one\ntwo\nthree");
        assert_eq!(both, "██  one\n▀▀  two\n    three");
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
