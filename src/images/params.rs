//! Transform parameters from a query string: `w`, `h`, `fit`, `fmt`, `q`, `preset` (and `sig` on
//! routes that require signed parameter sets). Pure: parsing, bounds, canonical form, format
//! negotiation.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fit {
    /// Fill the box exactly, cropping what overflows (centered).
    Cover,
    /// Fit inside the box and pad to its exact size.
    Contain,
    /// Stretch to the box, ignoring the aspect ratio.
    Fill,
    /// Fit inside the box (the result may be smaller on one side).
    Inside,
    /// Cover the box without cropping (the result may be larger on one side).
    Outside,
}

impl Fit {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "cover" => Self::Cover,
            "contain" => Self::Contain,
            "fill" => Self::Fill,
            "inside" => Self::Inside,
            "outside" => Self::Outside,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cover => "cover",
            Self::Contain => "contain",
            Self::Fill => "fill",
            Self::Inside => "inside",
            Self::Outside => "outside",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }
}

/// The format a request asks for: a fixed one, or the best the client's `Accept` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormatRequest {
    Fixed(Format),
    Auto,
    /// The source's own format (JPEG stays JPEG; PNG, GIF and WebP sources become PNG or WebP).
    Source,
}

/// A validated set of transform parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transform {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fit: Fit,
    pub format: FormatRequest,
    pub quality: u8,
}

impl Transform {
    /// The canonical text of these parameters (sorted, defaults filled in): the cache key part
    /// and what signatures cover.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        out.push_str("fit=");
        out.push_str(self.fit.as_str());
        out.push_str("&fmt=");
        out.push_str(match self.format {
            FormatRequest::Fixed(f) => f.as_str(),
            FormatRequest::Auto => "auto",
            FormatRequest::Source => "source",
        });
        if let Some(h) = self.height {
            out.push_str(&format!("&h={h}"));
        }
        out.push_str(&format!("&q={}", self.quality));
        if let Some(w) = self.width {
            out.push_str(&format!("&w={w}"));
        }
        out
    }

    /// Picks the output format for a source format and the client's `Accept`.
    pub fn negotiate(&self, source: Format, accept: Option<&str>) -> Format {
        self.output_format(source, takes_webp(accept))
    }

    /// The output format for a source format, given whether the client takes WebP.
    pub fn output_format(&self, source: Format, webp_accepted: bool) -> Format {
        match self.format {
            FormatRequest::Fixed(f) => f,
            FormatRequest::Source => source,
            FormatRequest::Auto if webp_accepted => Format::Webp,
            FormatRequest::Auto => source,
        }
    }
}

/// True when the client's `Accept` names WebP (with a non-zero quality): what `fmt=auto` asks.
pub fn takes_webp(accept: Option<&str>) -> bool {
    accepts(accept, "image/webp")
}

/// True when `accept` lists `mime` explicitly with a non-zero quality.
fn accepts(accept: Option<&str>, mime: &str) -> bool {
    let Some(accept) = accept else { return false };
    accept.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let kind = parts.next().unwrap_or("");
        let zero = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        kind.eq_ignore_ascii_case(mime) && !zero
    })
}

/// What a route allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Any parameters within the bounds.
    Open,
    /// Only `?preset=NAME`.
    PresetsOnly,
    /// Any parameters within the bounds, with a valid `sig`; presets need no signature.
    Signed,
}

#[derive(Debug, Clone)]
pub struct Bounds {
    pub max_width: u32,
    pub max_height: u32,
    pub default_quality: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ParamError {
    pub param: &'static str,
    pub message: String,
}

fn bad(param: &'static str, message: impl Into<String>) -> ParamError {
    ParamError {
        param,
        message: message.into(),
    }
}

/// The request's transform, if it asks for one. `presets` maps names to their parameter text
/// (validated at config time with the same parser). `Ok(None)`: no transform parameters at all.
/// The returned flag says whether the parameters need a signature on a `Signed` route.
pub fn parse(
    query: Option<&str>,
    policy: Policy,
    bounds: &Bounds,
    presets: &BTreeMap<String, Transform>,
) -> Result<Option<(Transform, Option<String>)>, ParamError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let mut width = None;
    let mut height = None;
    let mut fit = None;
    let mut format = None;
    let mut quality = None;
    let mut preset = None;
    let mut signature = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.as_ref();
        let once = |seen: bool, param: &'static str| {
            if seen {
                Err(bad(param, "given twice"))
            } else {
                Ok(())
            }
        };
        match name.as_ref() {
            "w" => {
                once(width.is_some(), "w")?;
                width = Some(dimension("w", value, bounds.max_width)?);
            }
            "h" => {
                once(height.is_some(), "h")?;
                height = Some(dimension("h", value, bounds.max_height)?);
            }
            "fit" => {
                once(fit.is_some(), "fit")?;
                fit = Some(Fit::parse(value).ok_or_else(|| {
                    bad("fit", "must be cover, contain, fill, inside or outside")
                })?);
            }
            "fmt" => {
                once(format.is_some(), "fmt")?;
                format = Some(match value {
                    "jpeg" | "jpg" => FormatRequest::Fixed(Format::Jpeg),
                    "png" => FormatRequest::Fixed(Format::Png),
                    "webp" => FormatRequest::Fixed(Format::Webp),
                    "auto" => FormatRequest::Auto,
                    "avif" => return Err(bad("fmt", "avif is not offered by this gateway")),
                    _ => return Err(bad("fmt", "must be jpeg, png, webp or auto")),
                });
            }
            "q" => {
                once(quality.is_some(), "q")?;
                quality = Some(
                    value
                        .parse::<u8>()
                        .ok()
                        .filter(|q| (1..=100).contains(q))
                        .ok_or_else(|| bad("q", "must be a whole number from 1 to 100"))?,
                );
            }
            "preset" => {
                once(preset.is_some(), "preset")?;
                preset = Some(value.to_string());
            }
            "sig" => {
                once(signature.is_some(), "sig")?;
                signature = Some(value.to_string());
            }
            _ => {
                return Err(ParamError {
                    param: "query",
                    message: format!("unknown parameter {:?}", name.as_ref()),
                });
            }
        }
    }
    let explicit = width.is_some()
        || height.is_some()
        || fit.is_some()
        || format.is_some()
        || quality.is_some();
    if let Some(name) = preset {
        if explicit {
            return Err(bad("preset", "cannot be combined with w, h, fit, fmt or q"));
        }
        let transform = presets
            .get(&name)
            .cloned()
            .ok_or_else(|| bad("preset", format!("no preset named {name:?}")))?;
        return Ok(Some((transform, None)));
    }
    if !explicit {
        if signature.is_some() {
            return Err(bad("sig", "signs nothing: no transform parameters"));
        }
        return Ok(None);
    }
    match policy {
        Policy::PresetsOnly => {
            return Err(bad(
                "preset",
                "this route only serves named presets (?preset=NAME)",
            ));
        }
        Policy::Signed if signature.is_none() => {
            return Err(bad("sig", "this route requires signed parameters"));
        }
        Policy::Open if signature.is_some() => {
            return Err(bad("sig", "this route does not take signatures"));
        }
        _ => {}
    }
    let transform = Transform {
        width,
        height,
        fit: fit.unwrap_or(Fit::Cover),
        format: format.unwrap_or(FormatRequest::Source),
        quality: quality.unwrap_or(bounds.default_quality),
    };
    Ok(Some((transform, signature)))
}

fn dimension(param: &'static str, value: &str, max: u32) -> Result<u32, ParamError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|v| (1..=max).contains(v))
        .ok_or_else(|| bad(param, format!("must be a whole number from 1 to {max}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            max_width: 4000,
            max_height: 3000,
            default_quality: 80,
        }
    }

    fn presets() -> BTreeMap<String, Transform> {
        let mut p = BTreeMap::new();
        p.insert(
            "thumb".to_string(),
            Transform {
                width: Some(200),
                height: Some(200),
                fit: Fit::Cover,
                format: FormatRequest::Fixed(Format::Webp),
                quality: 70,
            },
        );
        p
    }

    fn open(q: &str) -> Result<Option<(Transform, Option<String>)>, ParamError> {
        parse(Some(q), Policy::Open, &bounds(), &presets())
    }

    #[test]
    fn parses_and_canonicalizes() {
        let (t, sig) = open("w=400&fmt=auto").unwrap().unwrap();
        assert_eq!(t.width, Some(400));
        assert_eq!(t.height, None);
        assert_eq!(t.fit, Fit::Cover);
        assert_eq!(t.quality, 80);
        assert!(sig.is_none());
        assert_eq!(t.canonical(), "fit=cover&fmt=auto&q=80&w=400");
        let (same, _) = open("fmt=auto&q=80&w=400&fit=cover").unwrap().unwrap();
        assert_eq!(same.canonical(), t.canonical());
        assert_eq!(open("").unwrap(), None);
        assert_eq!(
            parse(None, Policy::Open, &bounds(), &presets()).unwrap(),
            None
        );
    }

    #[test]
    fn bad_parameters_name_themselves() {
        let param = |q: &str| open(q).unwrap_err().param;
        assert_eq!(param("w=0"), "w");
        assert_eq!(param("w=4001"), "w");
        assert_eq!(param("w=abc"), "w");
        assert_eq!(param("h=-1"), "h");
        assert_eq!(param("w=10&w=20"), "w");
        assert_eq!(param("fit=crop"), "fit");
        assert_eq!(param("fmt=tiff"), "fmt");
        assert_eq!(param("fmt=avif"), "fmt");
        assert_eq!(param("q=0"), "q");
        assert_eq!(param("q=101"), "q");
        assert_eq!(param("zoom=2"), "query");
        assert_eq!(param("preset=huge"), "preset");
        assert_eq!(param("preset=thumb&w=10"), "preset");
        assert_eq!(param("w=10&sig=abc"), "sig");
    }

    #[test]
    fn presets_only_and_signed_routes() {
        let b = bounds();
        let p = presets();
        let (t, _) = parse(Some("preset=thumb"), Policy::PresetsOnly, &b, &p)
            .unwrap()
            .unwrap();
        assert_eq!(t.width, Some(200));
        assert_eq!(
            parse(Some("w=10"), Policy::PresetsOnly, &b, &p)
                .unwrap_err()
                .param,
            "preset"
        );
        assert_eq!(
            parse(Some("w=10"), Policy::Signed, &b, &p)
                .unwrap_err()
                .param,
            "sig"
        );
        let (_, sig) = parse(Some("w=10&sig=xyz"), Policy::Signed, &b, &p)
            .unwrap()
            .unwrap();
        assert_eq!(sig.as_deref(), Some("xyz"));
        assert!(parse(Some("preset=thumb"), Policy::Signed, &b, &p).is_ok());
    }

    #[test]
    fn negotiation_prefers_webp_when_accepted() {
        let (auto, _) = open("w=10&fmt=auto").unwrap().unwrap();
        let chrome = Some("image/avif,image/webp,image/apng,image/*,*/*;q=0.8");
        assert_eq!(auto.negotiate(Format::Jpeg, chrome), Format::Webp);
        assert_eq!(
            auto.negotiate(Format::Jpeg, Some("image/jpeg")),
            Format::Jpeg
        );
        assert_eq!(
            auto.negotiate(Format::Png, Some("image/webp;q=0, image/png")),
            Format::Png
        );
        assert_eq!(auto.negotiate(Format::Png, None), Format::Png);
        let (fixed, _) = open("w=10&fmt=jpeg").unwrap().unwrap();
        assert_eq!(fixed.negotiate(Format::Png, chrome), Format::Jpeg);
        let (source, _) = open("w=10").unwrap().unwrap();
        assert_eq!(source.negotiate(Format::Png, chrome), Format::Png);
    }
}
