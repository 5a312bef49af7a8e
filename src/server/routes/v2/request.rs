//! Reading an infer request: its JSON (alone, or as the header of a
//! binary-extension body), the texts of its one input and the outputs it
//! asks for.
//!
//! Nothing a request repeats may multiply the work or the answer: one input,
//! each output at most once (an unknown or repeated one is refused before
//! anything is scored), and texts read only up to the declared count, itself
//! at most `server.max_batch_size`.

use axum::http::HeaderMap;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::bad;
use super::binary::{decode_bytes, split_body, too_many};
use super::types::{Output, RawParameters, V2InferRequest, V2InputTensor, Wanted, INPUT};
use crate::server::error::ApiError;
use crate::server::extract::short;

/// A request, read and checked.
#[derive(Debug)]
pub(super) struct Decoded {
    /// The request's `id`, echoed.
    pub id: Option<String>,
    /// The texts, in order.
    pub texts: Vec<String>,
    /// The outputs to send, each once, in the order asked.
    pub outputs: Vec<Wanted>,
}

/// Reads a whole request body: `max_batch` is the most texts it may hold.
pub(super) fn decode(
    headers: &HeaderMap,
    body: &[u8],
    max_batch: usize,
) -> Result<Decoded, ApiError> {
    let (json, binary) = split_body(headers, body)?;
    // serde's derived structs also accept an array of their fields in order.
    if json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(bad(
            "invalid_json",
            "the request header must be a JSON object",
        ));
    }
    let request: V2InferRequest =
        serde_json::from_slice(json).map_err(|e| bad("invalid_json", short(e.to_string())))?;
    // Before the texts: a refused request costs no decoding.
    let outputs = requested_outputs(&request)?;
    let texts = input_texts(request.inputs, binary, max_batch)?;
    Ok(Decoded {
        id: request.id,
        texts,
        outputs,
    })
}

/// A parameter's value as `T` (`what` names the type in the message), or
/// `None` when absent.
fn parameter<T: serde::de::DeserializeOwned>(
    params: Option<&RawParameters>,
    key: &str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    let Some(raw) = params.and_then(|p| p.get(key)) else {
        return Ok(None);
    };
    serde_json::from_str(raw.get()).map(Some).map_err(|_| {
        bad(
            "invalid_parameter",
            format!("parameter '{key}' must be {what}"),
        )
    })
}

/// A boolean parameter; anything but a boolean is an error.
fn flag(params: Option<&RawParameters>, key: &str) -> Result<Option<bool>, ApiError> {
    parameter(params, key, "a boolean")
}

/// Collects the strings of JSON tensor data, flat or nested (row-major),
/// as they are parsed: past `max` it stops, having pushed one too many.
struct Strings<'a> {
    out: &'a mut Vec<String>,
    max: usize,
}

impl Strings<'_> {
    fn push<E: de::Error>(self, s: String) -> Result<(), E> {
        self.out.push(s);
        if self.out.len() > self.max {
            return Err(E::custom("too many texts"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Strings<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strings<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("strings, or arrays of them")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.push(s.to_owned())
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<(), E> {
        self.push(s)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Strings { out, max } = self;
        while seq
            .next_element_seed(Strings {
                out: &mut *out,
                max,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// The strings of JSON tensor data, at most `max` of them.
fn json_strings(data: &RawValue, max: usize) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_str(data.get());
    let read = Strings { out: &mut out, max }.deserialize(&mut de);
    match read {
        Ok(()) => Ok(out),
        Err(_) if out.len() > max => Err(too_many(max)),
        Err(_) => Err(bad(
            "invalid_data",
            "the text tensor holds something other than strings",
        )),
    }
}

/// The texts of the one input tensor, from JSON data or the binary part.
fn input_texts(
    mut inputs: Vec<V2InputTensor>,
    binary: &[u8],
    max_batch: usize,
) -> Result<Vec<String>, ApiError> {
    if inputs.len() != 1 || inputs[0].name != INPUT {
        return Err(bad(
            "invalid_inputs",
            format!("expected exactly one input, '{INPUT}'"),
        ));
    }
    let input = inputs.remove(0);
    if input.datatype != "BYTES" {
        return Err(bad(
            "wrong_datatype",
            format!(
                "input '{INPUT}' must have datatype BYTES, not {}",
                short(input.datatype)
            ),
        ));
    }
    let n = match input.shape.as_slice() {
        [n] if *n >= 0 => *n as usize,
        _ => {
            return Err(bad(
                "invalid_shape",
                format!("input '{INPUT}' must have shape [N]"),
            ))
        }
    };
    // The /predict/batch limit, checked before anything is decoded: no
    // request holds more texts than that in memory.
    if n > max_batch {
        return Err(ApiError::unprocessable(
            "batch_too_large",
            format!("{n} texts; the limit is {max_batch}"),
        ));
    }
    let binary_size: Option<u64> = parameter(
        input.parameters.as_ref(),
        "binary_data_size",
        "a byte count",
    )?;
    let texts = match (binary_size, input.data) {
        (Some(size), None) => {
            if size != binary.len() as u64 {
                return Err(bad(
                    "invalid_binary_data",
                    format!(
                        "binary_data_size is {size}; {} bytes follow the header",
                        binary.len()
                    ),
                ));
            }
            decode_bytes(binary, n)?
        }
        (None, Some(data)) if binary.is_empty() => json_strings(&data, n)?,
        _ => {
            return Err(bad(
                "invalid_data",
                "send the texts either as JSON data or as binary data with binary_data_size",
            ))
        }
    };
    if texts.len() != n {
        return Err(bad(
            "invalid_shape",
            format!("shape [{n}] but {} texts", texts.len()),
        ));
    }
    Ok(texts)
}

/// Which outputs to send, in order, and whether each goes as binary data.
/// An unknown output, or one named twice, is refused: each copy would be
/// the whole tensor again.
fn requested_outputs(req: &V2InferRequest) -> Result<Vec<Wanted>, ApiError> {
    let all_binary = flag(req.parameters.as_ref(), "binary_data_output")?.unwrap_or(false);
    let Some(outputs) = &req.outputs else {
        return Ok(Output::ALL
            .into_iter()
            .map(|output| Wanted {
                output,
                binary: all_binary,
            })
            .collect());
    };
    let mut wanted: Vec<Wanted> = Vec::with_capacity(Output::ALL.len());
    for o in outputs {
        let output = Output::ALL
            .into_iter()
            .find(|out| out.name() == o.name)
            .ok_or_else(|| {
                let [a, b] = Output::ALL.map(Output::name);
                bad("unknown_output", format!("outputs are '{a}' and '{b}'"))
            })?;
        if wanted.iter().any(|w| w.output == output) {
            return Err(bad(
                "duplicate_output",
                format!("output '{}' is asked for more than once", output.name()),
            ));
        }
        let binary = flag(o.parameters.as_ref(), "binary_data")?.unwrap_or(all_binary);
        wanted.push(Wanted { output, binary });
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn nested_json_data_flattens_row_major() {
        assert_eq!(
            json_strings(&raw(r#"[["a", "b"], ["c"]]"#), 3).unwrap(),
            vec!["a", "b", "c"]
        );
        assert_eq!(json_strings(&raw(r#""a\"b""#), 1).unwrap(), vec!["a\"b"]);
        for not_text in ["[1]", r#"[["a"], {"b": 1}]"#, "null", "[true]"] {
            let e = json_strings(&raw(not_text), 3).unwrap_err();
            assert_eq!(e.code, "invalid_data", "{not_text}");
        }
    }

    #[test]
    fn json_data_stops_past_the_declared_count() {
        let many = format!("[{}\"x\"]", "\"\",".repeat(100_000));
        let e = json_strings(&raw(&many), 2).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            ("invalid_shape", "shape [2] but more texts")
        );
        assert!(json_strings(&raw(r#"["a", ["b", "c"]]"#), 2).is_err());
        assert_eq!(
            json_strings(&raw("[[], []]"), 2).unwrap(),
            Vec::<String>::new()
        );
    }

    fn request(outputs: serde_json::Value) -> V2InferRequest {
        serde_json::from_value(serde_json::json!({
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}],
            "outputs": outputs,
        }))
        .unwrap()
    }

    #[test]
    fn each_output_is_sent_at_most_once() {
        let wanted = requested_outputs(&request(serde_json::json!([
            {"name": "probabilities"},
            {"name": "label", "parameters": {"binary_data": true}},
        ])))
        .unwrap();
        assert_eq!(
            wanted,
            vec![
                Wanted {
                    output: Output::Probabilities,
                    binary: false
                },
                Wanted {
                    output: Output::Label,
                    binary: true
                },
            ]
        );
        for outputs in [
            serde_json::json!([{"name": "label"}, {"name": "label"}]),
            serde_json::json!([
                {"name": "probabilities"},
                {"name": "label"},
                {"name": "probabilities", "parameters": {"binary_data": true}},
            ]),
        ] {
            let e = requested_outputs(&request(outputs)).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "duplicate_output")
            );
        }
        let e = requested_outputs(&request(serde_json::json!([{"name": "logits"}]))).unwrap_err();
        assert_eq!(e.code, "unknown_output");
        assert!(!e.message.contains("logits"), "{}", e.message);
    }
}
