//! A QR code drawn as text (half blocks, light modules as blocks), read
//! back from a captured screen and decoded: the characters are turned into
//! the pixels of a PBM image, which `zbarimg` (zbar-tools) decodes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

/// The QR code on `screen`: its rows of characters, found as the block of
/// lines whose first character is a half block or a full block, each cut
/// to the code's width (the text beside it is not part of it). The top
/// line of the drawing is all light margin, so it gives the width.
pub fn qr_rows(screen: &[String]) -> (usize, Vec<Vec<char>>) {
    let start = screen
        .iter()
        .position(|l| l.starts_with('█'))
        .unwrap_or_else(|| panic!("no QR code on the screen:\n{}", screen.join("\n")));
    let width = screen[start].chars().take_while(|&c| c == '█').count();
    let rows: Vec<Vec<char>> = screen[start..]
        .iter()
        .take_while(|l| l.starts_with(['█', '▀', '▄']))
        .map(|l| {
            let mut row: Vec<char> = l.chars().take(width).collect();
            row.resize(width, ' ');
            row
        })
        .collect();
    (start, rows)
}

/// The pixels of the drawn code: light modules (the drawn blocks) white,
/// the rest black like the terminal's background; `scale` pixels a module
/// and a black border of `border` modules.
pub fn to_pbm(rows: &[Vec<char>], scale: usize, border: usize) -> String {
    let width = rows[0].len();
    let mut modules: Vec<Vec<bool>> = Vec::new();
    for row in rows {
        let (top, bottom): (Vec<bool>, Vec<bool>) = row
            .iter()
            .map(|c| match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            })
            .unzip();
        modules.push(top);
        modules.push(bottom);
    }
    let side_x = (width + 2 * border) * scale;
    let side_y = (modules.len() + 2 * border) * scale;
    let mut pbm = format!("P1\n{side_x} {side_y}\n");
    for y in 0..side_y {
        let my = (y / scale).checked_sub(border);
        let line: Vec<&str> = (0..side_x)
            .map(|x| {
                let mx = (x / scale).checked_sub(border);
                let light = match (mx, my) {
                    (Some(mx), Some(my)) => modules
                        .get(my)
                        .and_then(|r| r.get(mx))
                        .copied()
                        .unwrap_or(false),
                    _ => false,
                };
                // PBM: 1 is black.
                if light {
                    "0"
                } else {
                    "1"
                }
            })
            .collect();
        pbm.push_str(&line.join(" "));
        pbm.push('\n');
    }
    pbm
}

pub fn zbarimg(path: &Path) -> String {
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(path)
        .output()
        .expect("run zbarimg");
    assert!(
        out.status.success(),
        "zbarimg found no code in {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}
