//! The CCCD reads itself: the QR code on a scanned card, found and decoded in the image
//! ([`read`]) and parsed by position ([`fields`]). It stores nothing and logs nothing personal.
//!
//! Bounded in memory and time whatever the bytes say: an image over [`CardLimits::max_pixels`]
//! (a decompression bomb declares millions by billions) is refused from its header before any
//! pixel is decoded, decoding may allocate at most [`CardLimits::max_alloc_bytes`], and only
//! PNG, JPEG and TIFF are decoded (a PDF scan is told to come as an image).

pub mod fields;

use std::io::Cursor;

pub use fields::{CardFields, NotRecognised, Sex};

/// The bounds of one read.
#[derive(Clone, Copy, Debug)]
pub struct CardLimits {
    /// Most pixels an image may have: a 300-dpi A4 scan has about 8.7 million, a 12 MP phone
    /// photo 12. More would cost the reader memory (a progressive JPEG's coefficients) and
    /// time for no better read.
    pub max_pixels: u64,
    /// Most bytes the decoder may allocate.
    pub max_alloc_bytes: u64,
}

impl Default for CardLimits {
    fn default() -> Self {
        Self {
            max_pixels: 16_000_000,
            max_alloc_bytes: 256 * 1024 * 1024,
        }
    }
}

/// What a scan's QR says.
#[derive(Debug)]
pub enum CardRead {
    /// A chip CCCD's QR, read with certainty.
    Recognised(Box<CardFields>),
    /// A QR was decoded but is not a chip CCCD's (another QR, the 2024 card's back).
    NotRecognised(NotRecognised),
    /// No readable QR in the image.
    NotFound,
}

/// Why an image could not be looked at.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(
        "the card's QR is read from images only (PNG, JPEG or TIFF); scan the card as an image"
    )]
    NotAnImage,
    #[error("the image is larger than {0} pixels")]
    TooLarge(u64),
    #[error("the image cannot be decoded: {0}")]
    Broken(String),
}

/// Finds and reads the QR code in an image's bytes. CPU-bound: run it off the async workers.
pub fn read(bytes: &[u8], limits: CardLimits) -> Result<CardRead, ScanError> {
    let grey = decode(bytes, limits)?;
    let (width, height) = (grey.width() as usize, grey.height() as usize);
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
        grey.get_pixel(x as u32, y as u32).0[0]
    });
    // Every QR in the scan: a page with two cards, or a decoy beside the card, must not decide
    // by which one is found first.
    let mut cards: Vec<CardFields> = Vec::new();
    let mut not_recognised = None;
    for grid in prepared.detect_grids() {
        let Ok((_, text)) = grid.decode() else {
            continue;
        };
        match fields::parse(&text) {
            Ok(card) if !cards.contains(&card) => cards.push(card),
            Ok(_) => {}
            Err(why) => not_recognised = Some(why),
        }
    }
    Ok(match cards.len() {
        0 => not_recognised.map_or(CardRead::NotFound, CardRead::NotRecognised),
        1 => CardRead::Recognised(Box::new(cards.remove(0))),
        _ => CardRead::NotRecognised(NotRecognised("several different cards in one scan")),
    })
}

/// Decodes a PNG, JPEG or TIFF into 8-bit grey, within the limits.
fn decode(bytes: &[u8], limits: CardLimits) -> Result<image::GrayImage, ScanError> {
    use image::ImageFormat;
    let format = image::guess_format(bytes).map_err(|_| ScanError::NotAnImage)?;
    if !matches!(
        format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff
    ) {
        return Err(ScanError::NotAnImage);
    }
    // The header first: its size decides whether any pixel is decoded.
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(bounds(limits));
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| ScanError::Broken(e.to_string()))?;
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ScanError::TooLarge(limits.max_pixels));
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(bounds(limits));
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => ScanError::TooLarge(limits.max_pixels),
        other => ScanError::Broken(other.to_string()),
    })?;
    Ok(image.into_luma8())
}

fn bounds(limits: CardLimits) -> image::Limits {
    let mut bounds = image::Limits::default();
    let side = u32::try_from(limits.max_pixels).unwrap_or(u32::MAX);
    bounds.max_image_width = Some(side);
    bounds.max_image_height = Some(side);
    bounds.max_alloc = Some(limits.max_alloc_bytes);
    bounds
}
