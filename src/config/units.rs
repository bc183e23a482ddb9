//! Human-readable durations (`"15m"`, `"1h 30m"`, `"250ms"`) and byte sizes (`"10MiB"`, `"512k"`).

use std::time::Duration;

use serde::Deserialize;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("{text:?} is not a duration ({e}); write e.g. \"30s\", \"15m\", \"1h\"")
    })
}

/// A size in the config file: a plain integer of bytes or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    /// Units are binary, as in nginx: `k`, `KB` and `KiB` all mean 1024 bytes.
    pub fn to_bytes(&self) -> Result<u64, String> {
        let text = match self {
            Self::Bytes(n) => return Ok(*n),
            Self::Text(text) => text.trim(),
        };
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size; write e.g. \"10MiB\", \"512k\""))?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            other => return Err(format!("unknown size unit {other:?} in {text:?}")),
        };
        Ok((number * multiplier as f64) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").unwrap_err().contains("\"soon\""));
        assert!(parse_duration("15").is_err());
    }

    #[test]
    fn sizes() {
        let s = |t: &str| SizeValue::Text(t.into()).to_bytes();
        assert_eq!(s("10MiB").unwrap(), 10 << 20);
        assert_eq!(s("512k").unwrap(), 512 << 10);
        assert_eq!(s("1.5 GB").unwrap(), 3 << 29);
        assert_eq!(s("100").unwrap(), 100);
        assert_eq!(SizeValue::Bytes(7).to_bytes().unwrap(), 7);
        assert!(s("ten").is_err());
        assert!(s("10 parsecs").unwrap_err().contains("unit"));
    }
}
