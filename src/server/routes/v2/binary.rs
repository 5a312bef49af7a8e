//! The binary tensor data extension's codec: a body is a JSON header of
//! `Inference-Header-Content-Length` bytes, then raw tensor data; `BYTES`
//! elements are a 4-byte little-endian length and the bytes, `FP64`
//! elements 8 little-endian bytes each.

use axum::http::HeaderMap;

use super::bad;
use crate::server::error::ApiError;

/// Header giving the length of the JSON part of a binary-extension body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Splits a body into its JSON header and the binary data after it (all
/// JSON without the header).
pub(super) fn split_body<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let len = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| {
            bad(
                "invalid_header",
                "Inference-Header-Content-Length must be a byte count",
            )
        })?;
    if len > body.len() {
        return Err(bad(
            "invalid_header",
            format!(
                "Inference-Header-Content-Length is {len}; the body has {} bytes",
                body.len()
            ),
        ));
    }
    Ok(body.split_at(len))
}

/// More texts than the shape declares: the error of [`decode_bytes`] (and
/// of JSON data) once one too many has been read.
pub(super) fn too_many(n: usize) -> ApiError {
    bad("invalid_shape", format!("shape [{n}] but more texts"))
}

/// Decodes at most `max` `BYTES` elements, each UTF-8 text.
pub(super) fn decode_bytes(mut raw: &[u8], max: usize) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        if out.len() == max {
            return Err(too_many(max));
        }
        let (len, rest) = raw
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("invalid_binary_data", "a BYTES element is cut short"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(bad("invalid_binary_data", "a BYTES element is cut short"));
        }
        let (element, rest) = rest.split_at(len);
        let text = std::str::from_utf8(element).map_err(|_| {
            bad(
                "invalid_binary_data",
                format!("text element {} is not UTF-8", out.len()),
            )
        })?;
        out.push(text.to_owned());
        raw = rest;
    }
    Ok(out)
}

/// Bytes `elements` take as `BYTES` data.
pub(super) fn bytes_size<'a>(elements: impl Iterator<Item = &'a str>) -> usize {
    elements.map(|e| 4 + e.len()).sum()
}

/// Appends `elements` as `BYTES` data. Each is at most `u32::MAX` bytes
/// (labels are at most a few hundred).
pub(super) fn put_bytes<'a>(out: &mut Vec<u8>, elements: impl Iterator<Item = &'a str>) {
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e.as_bytes());
    }
}

/// Appends `values` as `FP64` data.
pub(super) fn put_fp64(out: &mut Vec<u8>, values: impl Iterator<Item = f64>) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, StatusCode};

    use super::*;

    fn encode(texts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, texts.iter().copied());
        assert_eq!(out.len(), bytes_size(texts.iter().copied()));
        out
    }

    #[test]
    fn bytes_elements_round_trip_and_reject_truncation() {
        let raw = encode(&["hello", "", "wörld"]);
        assert_eq!(raw[..9], *b"\x05\0\0\0hello");
        assert_eq!(decode_bytes(&raw, 3).unwrap(), vec!["hello", "", "wörld"]);
        for cut in 1..raw.len() {
            let ok = decode_bytes(&raw[..cut], 3);
            // Only cuts at element boundaries decode.
            assert_eq!(ok.is_ok(), [9, 13].contains(&cut), "cut at {cut}");
        }
        assert!(decode_bytes(&[1, 0, 0, 0, 0xff], 1).is_err());
    }

    #[test]
    fn bytes_elements_stop_past_the_declared_count() {
        // Empty elements cost 4 bytes of body each: decoding stops at the
        // first one over the count instead of collecting them all.
        let raw = vec![0u8; 4 * 100_000];
        let e = decode_bytes(&raw, 2).unwrap_err();
        assert_eq!(
            (e.status, e.code, e.message.as_str()),
            (
                StatusCode::BAD_REQUEST,
                "invalid_shape",
                "shape [2] but more texts"
            )
        );
    }

    #[test]
    fn fp64_elements_are_little_endian() {
        let mut out = Vec::new();
        put_fp64(&mut out, [1.0, -0.5].into_iter());
        assert_eq!(out.len(), 16);
        assert_eq!(out[..8], 1.0f64.to_le_bytes());
        assert_eq!(f64::from_le_bytes(out[8..].try_into().unwrap()), -0.5);
    }

    #[test]
    fn the_header_length_splits_the_body() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            split_body(&headers, b"{}tail").unwrap(),
            (&b"{}tail"[..], &b""[..])
        );
        headers.insert(HEADER_LENGTH, HeaderValue::from_static(" 2 "));
        assert_eq!(
            split_body(&headers, b"{}tail").unwrap(),
            (&b"{}"[..], &b"tail"[..])
        );
        for bad in ["7", "-1", "two"] {
            headers.insert(HEADER_LENGTH, HeaderValue::from_static(bad));
            let e = split_body(&headers, b"{}tail").unwrap_err();
            assert_eq!(e.code, "invalid_header", "{bad}");
        }
    }
}
