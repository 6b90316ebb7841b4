//! QR codes for the wallet and the dashboard: the wallet shows the customer's public key as a QR
//! code, and the merchant's dashboard reads it back from a camera frame or an uploaded picture, so
//! nobody types or pastes 130 hexadecimal characters at the counter.
//!
//! Encoding and decoding are done here, by maintained Rust crates (`qrcode`, `rqrr`) compiled into
//! the same WebAssembly module as the receipt verifier, rather than by hand-written JavaScript.

use std::fmt;

/// Why a QR code could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QrError {
    /// The text does not fit in a QR code.
    TooLong(usize),
    /// The pixel buffer does not have `width * height * 4` bytes (RGBA).
    BadImage {
        /// The bytes given.
        len: usize,
        /// The width given.
        width: u32,
        /// The height given.
        height: u32,
    },
    /// A QR code was found but could not be read (damaged, blurred, cut off).
    Unreadable(String),
}

impl fmt::Display for QrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QrError::TooLong(n) => write!(f, "{n} characters do not fit in a QR code"),
            QrError::BadImage { len, width, height } => write!(
                f,
                "an image of {width}x{height} pixels has {} bytes of RGBA, not {len}",
                u64::from(*width) * u64::from(*height) * 4
            ),
            QrError::Unreadable(why) => {
                write!(f, "a QR code is in the picture but cannot be read ({why})")
            }
        }
    }
}

impl std::error::Error for QrError {}

/// `text` as a QR code in SVG (dark modules on white, with the standard quiet zone), for an
/// `<img src="data:image/svg+xml,…">`: the page never parses it as markup.
///
/// A public key in hex is written in capitals so it is encoded in the QR alphanumeric mode,
/// which makes a smaller code (fewer, larger modules) that cameras read more easily; readers
/// lower-case it again.
pub fn qr_svg(text: &str) -> Result<String, QrError> {
    let data = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        text.to_ascii_uppercase()
    } else {
        text.to_owned()
    };
    let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| QrError::TooLong(text.chars().count()))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build())
}

/// The text of the first readable QR code in an RGBA picture (`width * height * 4` bytes, as a
/// canvas's `getImageData` gives), or `None` when the picture holds no QR code.
pub fn decode_qr(rgba: &[u8], width: u32, height: u32) -> Result<Option<String>, QrError> {
    let (w, h) = (width as usize, height as usize);
    let expected = w.checked_mul(h).and_then(|n| n.checked_mul(4));
    if expected != Some(rgba.len()) {
        return Err(QrError::BadImage {
            len: rgba.len(),
            width,
            height,
        });
    }
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let i = (y * w + x) * 4;
        let (r, g, b, a) = (
            u32::from(rgba[i]),
            u32::from(rgba[i + 1]),
            u32::from(rgba[i + 2]),
            u32::from(rgba[i + 3]),
        );
        // Rec. 601 luma, composed over white (a transparent pixel is background, not black).
        let luma = (299 * r + 587 * g + 114 * b) / 1000;
        let over_white = (luma * a + 255 * (255 - a)) / 255;
        u8::try_from(over_white).unwrap_or(u8::MAX)
    });
    let mut last_error = None;
    for grid in image.detect_grids() {
        match grid.decode() {
            Ok((_, text)) => return Ok(Some(text)),
            Err(e) => last_error = Some(e.to_string()),
        }
    }
    match last_error {
        Some(why) => Err(QrError::Unreadable(why)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rasterises the SVG's modules: each `<path d="M{x} {y}h{w}v{h}H{x}V{y}"…>` rectangle is
    /// painted black on a white RGBA canvas, scaled by `scale`, so the round trip needs no image
    /// library.
    fn rasterise(svg: &str, scale: usize) -> (Vec<u8>, u32, u32) {
        let dimension = |name: &str| -> usize {
            let at = svg.find(&format!("{name}=\"")).expect("a size") + name.len() + 2;
            svg[at..]
                .split('"')
                .next()
                .expect("a value")
                .parse()
                .expect("a number")
        };
        let (w, h) = (dimension("width") * scale, dimension("height") * scale);
        let mut rgba = vec![255u8; w * h * 4];
        let d_at = svg.find(" d=\"").expect("a path") + 4;
        let d = svg[d_at..].split('"').next().expect("path data");
        for rect in d.split('M').filter(|r| !r.is_empty()) {
            let nums: Vec<usize> = rect
                .split(|c: char| c.is_ascii_alphabetic() || c == ' ')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("an integer"))
                .collect();
            let (x, y, rw, rh) = (nums[0], nums[1], nums[2], nums[3]);
            for py in y * scale..(y + rh) * scale {
                for px in x * scale..(x + rw) * scale {
                    rgba[(py * w + px) * 4..(py * w + px) * 4 + 3].fill(0);
                }
            }
        }
        (rgba, w as u32, h as u32)
    }

    #[test]
    fn a_public_key_survives_the_round_trip_in_capitals() {
        let pk = format!("04{}", "ab12".repeat(32));
        let svg = qr_svg(&pk).expect("fits");
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
        let (rgba, w, h) = rasterise(&svg, 2);
        let read = decode_qr(&rgba, w, h).expect("readable").expect("found");
        assert_eq!(read, pk.to_ascii_uppercase());
    }

    #[test]
    fn a_blank_picture_holds_no_code_and_a_short_buffer_is_refused() {
        assert_eq!(decode_qr(&[255; 40 * 30 * 4], 40, 30), Ok(None));
        let error = decode_qr(&[0; 10], 40, 30).expect_err("short");
        assert_eq!(
            error.to_string(),
            "an image of 40x30 pixels has 4800 bytes of RGBA, not 10"
        );
        assert!(decode_qr(&[], u32::MAX, u32::MAX).is_err());
    }

    #[test]
    fn text_too_long_for_any_qr_code_is_refused() {
        assert_eq!(qr_svg(&"x".repeat(8000)), Err(QrError::TooLong(8000)));
    }
}
