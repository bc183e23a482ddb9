//! The CPU part of a transform: check the header, decode within limits, apply the EXIF
//! orientation, resize (fast_image_resize, Lanczos3), encode (JPEG, PNG, lossy WebP through
//! libwebp). Synchronous: it runs on the image worker pool, never on a proxy thread.

use std::io::Cursor;
use std::time::{Duration, Instant};

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::params::{Fit, Format, Transform};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the object is not an image this gateway transforms (JPEG, PNG, GIF, WebP)")]
    Unsupported,
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
    #[error("the image is {width}x{height}: more than the {limit} pixels allowed")]
    TooLarge { width: u32, height: u32, limit: u64 },
    #[error("the result would be {width}x{height}, larger than allowed")]
    OutputTooLarge { width: u32, height: u32 },
    #[error("encoding failed: {0}")]
    Encode(String),
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest source, in pixels (width × height), checked from the header before decoding.
    pub max_source_pixels: u64,
    pub max_width: u32,
    pub max_height: u32,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub decode: Duration,
    pub resize: Duration,
    pub encode: Duration,
}

#[derive(Debug)]
pub struct Output {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

/// The output format a source format maps to when the request keeps "the source's format".
fn source_format(format: Option<ImageFormat>) -> Result<Format, ImageError> {
    match format {
        Some(ImageFormat::Jpeg) => Ok(Format::Jpeg),
        Some(ImageFormat::Png | ImageFormat::Gif) => Ok(Format::Png),
        Some(ImageFormat::WebP) => Ok(Format::Webp),
        _ => Err(ImageError::Unsupported),
    }
}

fn limits_error(
    width: u32,
    height: u32,
    limits: &Limits,
) -> impl Fn(image::ImageError) -> ImageError {
    let limit = limits.max_source_pixels;
    move |e| match e {
        image::ImageError::Limits(_) => ImageError::TooLarge {
            width,
            height,
            limit,
        },
        other => ImageError::Corrupt(other.to_string()),
    }
}

/// Whether an EXIF orientation turns the image by a quarter (width and height swap).
fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Decodes `bytes` upright; also returns the source's format as an output format. JPEG goes through libjpeg-turbo, and `needed` (the smallest upright
/// size the resize needs) lets it scale down by 1/2, 1/4 or 1/8 in the IDCT ("shrink-on-load",
/// as libvips does), which saves most of the decoding work for thumbnails. Returns the image, the
/// upright size of the original and its format.
fn decode(
    bytes: &[u8],
    limits: &Limits,
    needed: impl Fn((u32, u32)) -> (u32, u32),
) -> Result<(DynamicImage, (u32, u32), Format), ImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let format = reader.format();
    let source = source_format(format)?;
    let mut decode_limits = image::Limits::default();
    decode_limits.max_alloc = Some(limits.max_source_pixels.saturating_mul(4) + (16 << 20));
    reader.limits(decode_limits);
    let mut decoder = reader.into_decoder().map_err(limits_error(0, 0, limits))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_source_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            limit: limits.max_source_pixels,
        });
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let upright = if swaps_axes(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    let (need_w, need_h) = needed(upright);
    let (need_w, need_h) = if swaps_axes(orientation) {
        (need_h, need_w)
    } else {
        (need_w, need_h)
    };
    let jpeg = format == Some(ImageFormat::Jpeg);
    let scaled = if jpeg {
        decode_jpeg_scaled(bytes, need_w, need_h)?
    } else {
        None
    };
    let mut image = match scaled {
        Some(image) => image,
        None => DynamicImage::from_decoder(decoder).map_err(limits_error(width, height, limits))?,
    };
    image.apply_orientation(orientation);
    Ok((image, upright, source))
}

/// A JPEG decoded by libjpeg-turbo at the smallest IDCT scale (1/8, 1/4, 1/2 or 1) that is
/// still at least `w`×`h`; `None` for colour spaces it does not convert to RGB (CMYK, YCCK),
/// which the general decoder takes. A truncated or corrupt stream is an error, never a
/// half-grey picture: libjpeg-turbo reports warnings such as "premature end of data" as
/// failures, as libvips' default `fail-on=warning` does.
fn decode_jpeg_scaled(bytes: &[u8], w: u32, h: u32) -> Result<Option<DynamicImage>, ImageError> {
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};
    let corrupt = |e: turbojpeg::Error| ImageError::Corrupt(e.to_string());
    let mut decompressor = Decompressor::new().map_err(corrupt)?;
    let header = decompressor.read_header(bytes).map_err(corrupt)?;
    if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
        return Ok(None);
    }
    let factor = [
        ScalingFactor::ONE_EIGHTH,
        ScalingFactor::ONE_QUARTER,
        ScalingFactor::ONE_HALF,
    ]
    .into_iter()
    .find(|f| {
        let scaled = header.scaled(*f);
        scaled.width >= w as usize && scaled.height >= h as usize
    })
    .unwrap_or(ScalingFactor::ONE);
    decompressor.set_scaling_factor(factor).map_err(corrupt)?;
    let scaled = header.scaled(factor);
    let mut image = Image {
        pixels: vec![0u8; 3 * scaled.width * scaled.height],
        width: scaled.width,
        pitch: 3 * scaled.width,
        height: scaled.height,
        format: PixelFormat::RGB,
    };
    decompressor
        .decompress(bytes, image.as_deref_mut())
        .map_err(corrupt)?;
    let size = |v: usize| u32::try_from(v).map_err(|_| ImageError::Corrupt("size".into()));
    let rgb = image::RgbImage::from_raw(size(scaled.width)?, size(scaled.height)?, image.pixels)
        .ok_or_else(|| ImageError::Corrupt("pixel buffer size".into()))?;
    Ok(Some(DynamicImage::ImageRgb8(rgb)))
}

/// Where the resized image goes: its size, the canvas it is placed on (for `contain`), and
/// whether the source is cropped to the destination's aspect ratio (for `cover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    width: u32,
    height: u32,
    canvas: Option<(u32, u32)>,
    crop_to_fill: bool,
}

fn scaled(value: u32, factor: f64) -> u32 {
    ((f64::from(value) * factor).round() as u32).max(1)
}

fn geometry(src: (u32, u32), t: &Transform) -> Geometry {
    let (sw, sh) = src;
    let plain = |width, height| Geometry {
        width,
        height,
        canvas: None,
        crop_to_fill: false,
    };
    match (t.width, t.height) {
        (None, None) => plain(sw, sh),
        (Some(w), None) => plain(w, scaled(sh, f64::from(w) / f64::from(sw))),
        (None, Some(h)) => plain(scaled(sw, f64::from(h) / f64::from(sh)), h),
        (Some(w), Some(h)) => {
            let fx = f64::from(w) / f64::from(sw);
            let fy = f64::from(h) / f64::from(sh);
            match t.fit {
                Fit::Fill => plain(w, h),
                Fit::Cover => Geometry {
                    crop_to_fill: true,
                    ..plain(w, h)
                },
                Fit::Inside => {
                    let f = fx.min(fy);
                    plain(scaled(sw, f).min(w), scaled(sh, f).min(h))
                }
                Fit::Outside => {
                    let f = fx.max(fy);
                    plain(scaled(sw, f).max(w), scaled(sh, f).max(h))
                }
                Fit::Contain => {
                    let f = fx.min(fy);
                    Geometry {
                        canvas: Some((w, h)),
                        ..plain(scaled(sw, f).min(w), scaled(sh, f).min(h))
                    }
                }
            }
        }
    }
}

/// Transforms `bytes` as `t` asks, into the format `t` negotiates with the source's format and
/// whether the client takes WebP.
pub fn transform(
    bytes: &[u8],
    t: &Transform,
    webp_accepted: bool,
    limits: &Limits,
) -> Result<(Output, Timings), ImageError> {
    let mut timings = Timings::default();
    let started = Instant::now();
    // The decoded image must be at least as large as what the resize makes of it.
    let (image, upright, source) = decode(bytes, limits, |size| {
        let g = geometry(size, t);
        (g.width, g.height)
    })?;
    timings.decode = started.elapsed();
    let format = t.output_format(source, webp_accepted);

    let g = geometry(upright, t);
    let (out_w, out_h) = g.canvas.unwrap_or((g.width, g.height));
    // Outside-fits may exceed the box; nothing may exceed twice the configured maximum.
    if out_w > limits.max_width.saturating_mul(2) || out_h > limits.max_height.saturating_mul(2) {
        return Err(ImageError::OutputTooLarge {
            width: out_w,
            height: out_h,
        });
    }

    let started = Instant::now();
    let source_size = (image.width(), image.height());
    let alpha = image.color().has_alpha() || (g.canvas.is_some() && format != Format::Jpeg);
    let (pixels, pixel_type, channels) = if alpha {
        (image.into_rgba8().into_raw(), PixelType::U8x4, 4usize)
    } else {
        (image.into_rgb8().into_raw(), PixelType::U8x3, 3usize)
    };
    let resized = resize(pixels, source_size, pixel_type, &g)?;
    let (pixels, w, h) = match g.canvas {
        Some((cw, ch)) => place_on_canvas(&resized, g.width, g.height, cw, ch, channels),
        None => (resized, g.width, g.height),
    };
    timings.resize = started.elapsed();

    let started = Instant::now();
    let encoded = encode(pixels, w, h, channels, format, t.quality)?;
    timings.encode = started.elapsed();
    Ok((
        Output {
            bytes: encoded,
            format,
            width: w,
            height: h,
        },
        timings,
    ))
}

/// An uploaded image made to fit inside `max_width` × `max_height` (never enlarged), upright,
/// in `format`; re-encoding leaves EXIF and other metadata behind.
pub fn fit_within(
    bytes: &[u8],
    (max_width, max_height): (u32, u32),
    format: Format,
    quality: u8,
    limits: &Limits,
) -> Result<Output, ImageError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    source_format(reader.format())?;
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (upright_w, upright_h) = if swaps_axes(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    let factor = (f64::from(max_width) / f64::from(upright_w.max(1)))
        .min(f64::from(max_height) / f64::from(upright_h.max(1)))
        .min(1.0);
    let target = Transform {
        width: Some(scaled(upright_w, factor).min(max_width)),
        height: None,
        fit: Fit::Inside,
        format: super::params::FormatRequest::Fixed(format),
        quality,
    };
    transform(bytes, &target, true, limits).map(|(output, _)| output)
}

fn resize(
    pixels: Vec<u8>,
    (sw, sh): (u32, u32),
    pixel_type: PixelType,
    g: &Geometry,
) -> Result<Vec<u8>, ImageError> {
    if (sw, sh) == (g.width, g.height) {
        return Ok(pixels);
    }
    let src = Image::from_vec_u8(sw, sh, pixels, pixel_type)
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let mut dst = Image::new(g.width, g.height, pixel_type);
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    if g.crop_to_fill {
        options = options.fit_into_destination(Some((0.5, 0.5)));
    }
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    Ok(dst.into_vec())
}

/// Centers a `w`×`h` image on a transparent `cw`×`ch` canvas (white once flattened for JPEG).
fn place_on_canvas(
    pixels: &[u8],
    w: u32,
    h: u32,
    cw: u32,
    ch: u32,
    channels: usize,
) -> (Vec<u8>, u32, u32) {
    let mut canvas = vec![0u8; cw as usize * ch as usize * channels];
    if channels == 3 {
        canvas.fill(255);
    }
    let left = ((cw - w) / 2) as usize;
    let top = ((ch - h) / 2) as usize;
    let row = w as usize * channels;
    for y in 0..h as usize {
        let from = y * row;
        let to = ((top + y) * cw as usize + left) * channels;
        canvas[to..to + row].copy_from_slice(&pixels[from..from + row]);
    }
    (canvas, cw, ch)
}

/// RGBA over white, for formats without alpha.
fn flatten(rgba: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let a = u16::from(px[3]);
        for &c in &px[..3] {
            rgb.push(((u16::from(c) * a + 255 * (255 - a) + 127) / 255) as u8);
        }
    }
    rgb
}

fn encode(
    pixels: Vec<u8>,
    w: u32,
    h: u32,
    channels: usize,
    format: Format,
    quality: u8,
) -> Result<Vec<u8>, ImageError> {
    match format {
        Format::Jpeg => {
            let rgb = if channels == 4 {
                flatten(&pixels)
            } else {
                pixels
            };
            let (w16, h16) = match (u16::try_from(w), u16::try_from(h)) {
                (Ok(a), Ok(b)) => (a, b),
                _ => {
                    return Err(ImageError::OutputTooLarge {
                        width: w,
                        height: h,
                    });
                }
            };
            let mut out = Vec::with_capacity(rgb.len() / 8);
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
            encoder.set_optimized_huffman_tables(true);
            encoder
                .encode(&rgb, w16, h16, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| ImageError::Encode(e.to_string()))?;
            Ok(out)
        }
        Format::Webp => {
            let encoder = if channels == 4 {
                webp::Encoder::from_rgba(&pixels, w, h)
            } else {
                webp::Encoder::from_rgb(&pixels, w, h)
            };
            let encoded = encoder
                .encode_simple(false, f32::from(quality))
                .map_err(|e| ImageError::Encode(format!("{e:?}")))?;
            Ok(encoded.to_vec())
        }
        Format::Png => {
            use image::ImageEncoder;
            use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
            let mut out = Vec::new();
            let color = if channels == 4 {
                image::ExtendedColorType::Rgba8
            } else {
                image::ExtendedColorType::Rgb8
            };
            PngEncoder::new_with_quality(&mut out, CompressionType::Level(6), PngFilter::NoFilter)
                .write_image(&pixels, w, h, color)
                .map_err(|e| ImageError::Encode(e.to_string()))?;
            Ok(out)
        }
    }
}
