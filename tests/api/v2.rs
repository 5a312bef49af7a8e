//! The Open Inference Protocol (KServe V2) routes: JSON and the binary tensor
//! data extension, checked against `/predict` for the same texts.

use serde_json::{json, Value};

use crate::helpers::*;

const INFER: &str = "/v2/models/spam-nb/infer";

/// Texts of the committed sample, a few of each label.
fn texts(n: usize) -> Vec<String> {
    sample().into_iter().map(|(t, _)| t).take(n).collect()
}

fn json_request(texts: &[String]) -> Value {
    json!({
        "id": "req-1",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [texts.len()], "data": texts}]
    })
}

/// A binary-extension body: JSON header, then the texts length-prefixed.
fn binary_request(texts: &[String], header_extra: Value) -> (Vec<u8>, usize) {
    let mut raw = Vec::new();
    for t in texts {
        raw.extend_from_slice(&(t.len() as u32).to_le_bytes());
        raw.extend_from_slice(t.as_bytes());
    }
    let mut header = json!({
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [texts.len()],
                    "parameters": {"binary_data_size": raw.len()}}]
    });
    for (k, v) in header_extra.as_object().unwrap() {
        header[k] = v.clone();
    }
    let mut body = serde_json::to_vec(&header).unwrap();
    let header_len = body.len();
    body.extend_from_slice(&raw);
    (body, header_len)
}

async fn post_binary(app: &TestApp, body: Vec<u8>, header_len: usize) -> reqwest::Response {
    app.client
        .post(app.url(INFER))
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", header_len.to_string())
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A 200 binary-extension answer split into its JSON header and binary data.
async fn binary_answer(r: reqwest::Response) -> (Value, Vec<u8>) {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let json_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let header = serde_json::from_slice(&bytes[..json_len]).unwrap();
    (header, bytes[json_len..].to_vec())
}

/// `/predict`'s label and class-ordered probabilities for each text.
async fn native(app: &TestApp, texts: &[String], classes: &[String]) -> Vec<(String, Vec<f64>)> {
    let mut out = Vec::new();
    for t in texts {
        let p = app.predict(t).await;
        let probs = classes
            .iter()
            .map(|c| p["probabilities"][c].as_f64().unwrap())
            .collect();
        out.push((p["label"].as_str().unwrap().to_owned(), probs));
    }
    out
}

async fn classes(app: &TestApp) -> Vec<String> {
    let meta: Value = app.get("/v2/models/spam-nb").await.json().await.unwrap();
    serde_json::from_value(meta["classes"].clone()).unwrap()
}

#[tokio::test]
async fn health_and_metadata_describe_the_served_model() {
    let app = spawn_app().await;
    let server: Value = app.get("/v2").await.json().await.unwrap();
    assert_eq!(server["name"], "nbserve");
    assert_eq!(
        server["extensions"],
        json!(["binary_tensor_data", "model_repository"])
    );
    assert_eq!(app.get("/v2/health/live").await.status(), 200);
    assert_eq!(app.get("/v2/health/ready").await.status(), 200);
    for path in [
        "/v2/models/spam-nb/ready",
        "/v2/models/spam-nb/versions/2026.11.30/ready",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["ready"], true);
    }
    let native: Value = app.get("/model").await.json().await.unwrap();
    for path in [
        "/v2/models/spam-nb",
        "/v2/models/spam-nb/versions/2026.11.30",
    ] {
        let meta: Value = app.get(path).await.json().await.unwrap();
        assert_eq!(meta["name"], native["name"]);
        assert_eq!(meta["versions"], json!([native["version"]]));
        assert_eq!(meta["classes"], native["classes"]);
        assert_eq!(
            meta["inputs"][0],
            json!({"name": "text", "datatype": "BYTES", "shape": [-1]})
        );
        assert_eq!(meta["outputs"][1]["shape"], json!([-1, 2]));
        assert_eq!(meta["platform"], "nbserve_bernoulli_nb");
    }
    app.stop().await;
}

/// The platform names the kind of model really served, not always Bernoulli.
#[tokio::test]
async fn metadata_names_the_complement_model_as_such() {
    let app = spawn_app_with(|s| {
        let cnb = s.model.dir.join("spam-cnb.json");
        std::fs::copy(root().join("models/spam-cnb.json"), &cnb).unwrap();
        s.model.path = cnb.into();
    })
    .await;
    let native: Value = app.get("/model").await.json().await.unwrap();
    assert_eq!(native["training"]["model"], "complement");
    let meta: Value = app
        .get(&format!("/v2/models/{}", native["name"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta["platform"], "nbserve_complement_nb", "{meta}");
    app.stop().await;
}

#[tokio::test]
async fn json_infer_equals_predict_and_returns_feedback_ids() {
    let app = spawn_app().await;
    let texts = texts(12);
    let classes = classes(&app).await;
    let r = app.post_json(INFER, &json_request(&texts)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], "req-1");
    assert_eq!(body["model_name"], "spam-nb");
    assert_eq!(body["model_version"], "2026.11.30");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["name"], "label");
    assert_eq!(outputs[0]["datatype"], "BYTES");
    assert_eq!(outputs[0]["shape"], json!([12]));
    assert_eq!(outputs[1]["name"], "probabilities");
    assert_eq!(outputs[1]["datatype"], "FP64");
    assert_eq!(outputs[1]["shape"], json!([12, classes.len()]));
    let probs: Vec<f64> = serde_json::from_value(outputs[1]["data"].clone()).unwrap();
    for (i, (label, expected)) in native(&app, &texts, &classes).await.into_iter().enumerate() {
        assert_eq!(outputs[0]["data"][i], label, "text {i}");
        assert_eq!(
            &probs[i * classes.len()..(i + 1) * classes.len()],
            expected.as_slice()
        );
    }
    // The ids feed the feedback loop like /predict's.
    let ids: Vec<&str> = body["parameters"]["prediction_ids"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(ids.len(), 12);
    let r = app
        .post_json(
            "/feedback",
            &json!({"prediction_id": ids[3], "label": classes[0]}),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    app.stop().await;
}

#[tokio::test]
async fn binary_infer_round_trips_and_equals_predict() {
    let app = spawn_app().await;
    let mut texts = texts(9);
    texts.push("ünïcödé wörds and FREE money €€€".into());
    let classes = classes(&app).await;
    let (body, header_len) =
        binary_request(&texts, json!({"parameters": {"binary_data_output": true}}));
    let (header, binary) = binary_answer(post_binary(&app, body, header_len).await).await;
    let mut rest = &binary[..];
    let mut take = |name: &str| {
        let out = header["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap();
        assert!(out.get("data").is_none());
        let size = out["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        let (mine, tail) = rest.split_at(size);
        rest = tail;
        mine.to_vec()
    };
    let labels_raw = take("label");
    let probs_raw = take("probabilities");
    assert!(rest.is_empty());
    let mut labels = Vec::new();
    let mut at = &labels_raw[..];
    while !at.is_empty() {
        let len = u32::from_le_bytes(at[..4].try_into().unwrap()) as usize;
        labels.push(String::from_utf8(at[4..4 + len].to_vec()).unwrap());
        at = &at[4 + len..];
    }
    let probs: Vec<f64> = probs_raw
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(probs.len(), texts.len() * classes.len());
    for (i, (label, expected)) in native(&app, &texts, &classes).await.into_iter().enumerate() {
        assert_eq!(labels[i], label, "text {i}");
        assert_eq!(
            &probs[i * classes.len()..(i + 1) * classes.len()],
            expected.as_slice()
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn requested_outputs_are_honoured_in_order_and_format() {
    let app = spawn_app().await;
    let texts = texts(3);
    let (body, header_len) = binary_request(
        &texts,
        json!({"outputs": [{"name": "probabilities"}, {"name": "label", "parameters": {"binary_data": true}}]}),
    );
    let (header, binary) = binary_answer(post_binary(&app, body, header_len).await).await;
    let outputs = header["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0]["name"], "probabilities");
    assert_eq!(outputs[0]["data"].as_array().unwrap().len(), 6);
    assert_eq!(outputs[1]["name"], "label");
    let size = outputs[1]["parameters"]["binary_data_size"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(binary.len(), size);

    let mut only_label = json_request(&texts);
    only_label["outputs"] = json!([{"name": "label"}]);
    let body: Value = app
        .post_json(INFER, &only_label)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(body["outputs"][0]["name"], "label");
    app.stop().await;
}

/// Asserts the protocol's error shape, `{"error": "<message>"}`.
async fn assert_v2_error(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status().as_u16(), status);
    let body: Value = r.json().await.expect("JSON error body");
    let message = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(!message.is_empty());
    message.to_owned()
}

#[tokio::test]
async fn bad_requests_get_protocol_errors_never_5xx() {
    let app = spawn_app_with(|s| s.server.max_batch_size = 4).await;
    let ok = json_request(&texts(2));
    // Unknown model or version.
    assert_v2_error(app.post_json("/v2/models/nope/infer", &ok).await, 404).await;
    assert_v2_error(app.get("/v2/models/nope").await, 404).await;
    assert_v2_error(app.get("/v2/models/nope/ready").await, 404).await;
    assert_v2_error(app.get("/v2/models/spam-nb/versions/0.0.0").await, 404).await;
    assert_v2_error(
        app.post_json("/v2/models/spam-nb/versions/0.0.0/infer", &ok)
            .await,
        404,
    )
    .await;
    // Wrong datatype, shape, input or output name.
    let mut wrong = ok.clone();
    wrong["inputs"][0]["datatype"] = json!("FP32");
    let m = assert_v2_error(app.post_json(INFER, &wrong).await, 400).await;
    assert!(m.contains("BYTES"), "{m}");
    let mut wrong = ok.clone();
    wrong["inputs"][0]["shape"] = json!([3]);
    assert_v2_error(app.post_json(INFER, &wrong).await, 400).await;
    let mut wrong = ok.clone();
    wrong["inputs"][0]["shape"] = json!([2, 1, 1]);
    assert_v2_error(app.post_json(INFER, &wrong).await, 400).await;
    let mut wrong = ok.clone();
    wrong["inputs"][0]["name"] = json!("input");
    assert_v2_error(app.post_json(INFER, &wrong).await, 400).await;
    let mut wrong = ok.clone();
    wrong["inputs"][0]["data"] = json!([1, 2]);
    assert_v2_error(app.post_json(INFER, &wrong).await, 400).await;
    let mut wrong = ok.clone();
    wrong["outputs"] = json!([{"name": "logits"}]);
    assert_v2_error(app.post_json(INFER, &wrong).await, 400).await;
    let mut wrong = ok.clone();
    wrong["parameters"] = json!({"binary_data_output": "yes"});
    assert_v2_error(app.post_json(INFER, &wrong).await, 400).await;
    // The /predict/batch limits.
    assert_v2_error(app.post_json(INFER, &json_request(&texts(5))).await, 422).await;
    assert_v2_error(app.post_json(INFER, &json_request(&[])).await, 422).await;
    assert_v2_error(
        app.post_json(INFER, &json_request(&["  ".into()])).await,
        422,
    )
    .await;
    // Malformed bodies and binary framing.
    assert_v2_error(app.post_raw(INFER, None, b"{not json".to_vec()).await, 400).await;
    let (body, header_len) = binary_request(&texts(2), json!({}));
    assert_v2_error(post_binary(&app, body.clone(), body.len() + 1).await, 400).await;
    let cut = body[..body.len() - 3].to_vec();
    assert_v2_error(post_binary(&app, cut, header_len).await, 400).await;
    let mut not_utf8 = body[..header_len].to_vec();
    // Same binary_data_size as two 1-byte elements would need.
    let size = body.len() - header_len;
    let mut raw = vec![0u8; size];
    raw[..5].copy_from_slice(&[1, 0, 0, 0, 0xff]);
    raw[5..9].copy_from_slice(&((size - 9) as u32).to_le_bytes());
    not_utf8.extend_from_slice(&raw);
    assert_v2_error(post_binary(&app, not_utf8, header_len).await, 400).await;
    // Unknown routes under /v2 answer in the protocol's shape too.
    assert_v2_error(app.get("/v2/nothing").await, 404).await;
    assert!(!app.metrics().await.contains("status=\"5"));
    app.stop().await;
}

/// An output named more than once would be the whole tensor again per
/// copy: refused with 400 before anything is scored, JSON or binary.
#[tokio::test]
async fn repeated_outputs_are_refused_not_encoded_again() {
    let app = spawn_app().await;
    let texts = texts(4);
    for outputs in [
        json!([{"name": "label"}, {"name": "label"}]),
        json!([{"name": "probabilities"}, {"name": "label"}, {"name": "probabilities"}]),
        Value::Array(vec![
            json!({"name": "probabilities", "parameters": {"binary_data": true}});
            2500
        ]),
        Value::Array(vec![json!({"name": "probabilities"}); 2500]),
    ] {
        let mut req = json_request(&texts);
        req["outputs"] = outputs.clone();
        let r = app.post_json(INFER, &req).await;
        let m = assert_v2_error(r, 400).await;
        assert!(m.contains("more than once"), "{m}");
        // The binary tensor data extension takes the same path.
        let (body, header_len) = binary_request(&texts, json!({ "outputs": outputs }));
        let m = assert_v2_error(post_binary(&app, body, header_len).await, 400).await;
        assert!(m.contains("more than once"), "{m}");
    }
    // Nothing was scored for them.
    let m = app.metrics().await;
    assert_eq!(
        metric_value(&m, "nbserve_batch_size_count{model=\"spam-nb\"}"),
        Some(0.0),
        "{m}"
    );
    // Each output once is fine, in any order.
    let mut req = json_request(&texts);
    req["outputs"] = json!([{"name": "probabilities"}, {"name": "label"}]);
    let body: Value = app.post_json(INFER, &req).await.json().await.unwrap();
    let names: Vec<&str> = body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["probabilities", "label"]);
    app.stop().await;
}

/// Texts are read only up to the declared count, itself within
/// `server.max_batch_size`: a body of many tiny elements is refused at the
/// first one too many, not collected whole.
#[tokio::test]
async fn texts_past_the_declared_count_are_not_collected() {
    let app = spawn_app_with(|s| s.server.max_batch_size = 4).await;
    // 100,000 empty binary elements (4 bytes each) behind shape [2].
    let mut body = serde_json::to_vec(&json!({
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                    "parameters": {"binary_data_size": 400_000}}]
    }))
    .unwrap();
    let header_len = body.len();
    body.resize(header_len + 400_000, 0);
    let m = assert_v2_error(post_binary(&app, body, header_len).await, 400).await;
    assert_eq!(m, "shape [2] but more texts");
    // The same in JSON, nested.
    let mut req = json_request(&texts(2));
    req["inputs"][0]["data"] = json!([["a", "b"], vec![""; 100_000]]);
    let m = assert_v2_error(app.post_json(INFER, &req).await, 400).await;
    assert_eq!(m, "shape [2] but more texts");
    // A shape over the batch limit is refused before its data is looked at.
    let mut req = json_request(&texts(2));
    req["inputs"][0]["shape"] = json!([5]);
    let m = assert_v2_error(app.post_json(INFER, &req).await, 422).await;
    assert!(m.contains("limit is 4"), "{m}");
    // One input, once.
    let mut req = json_request(&texts(2));
    req["inputs"] = json!([req["inputs"][0], req["inputs"][0]]);
    assert_v2_error(app.post_json(INFER, &req).await, 400).await;
    app.stop().await;
}

#[tokio::test]
async fn v2_readiness_follows_shutdown() {
    let app = spawn_app().await;
    app.state.set_not_ready();
    assert_v2_error(app.get("/v2/health/ready").await, 503).await;
    assert_v2_error(app.get("/v2/models/spam-nb/ready").await, 503).await;
    assert_eq!(app.get("/v2/health/live").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn layer_errors_under_v2_take_the_protocol_shape() {
    let app = spawn_app_with(|s| s.server.body_limit_bytes = 1000).await;
    let r = app.get(INFER).await;
    assert_eq!(r.headers()["allow"], "POST");
    assert_v2_error(r, 405).await;
    let big = json_request(&["word ".repeat(400)]);
    assert_v2_error(app.post_json(INFER, &big).await, 413).await;
    // The native API keeps its own shape.
    assert_error(
        app.post_json("/predict/batch", &big).await,
        413,
        "payload_too_large",
    )
    .await;
    app.stop().await;
}

/// The shipped model with its first class renamed so that the class order
/// (`zham`, `spam`) is not the name order; everything else as shipped.
fn spawn_unsorted_classes() -> impl std::future::Future<Output = TestApp> {
    spawn_app_with(|s| {
        let name = write_variant(&s.model.dir, "unsorted.json", |a| {
            assert_eq!(a.classes, ["ham", "spam"]);
            a.classes[0] = "zham".into();
            if let Some(e) = a.evaluation.as_mut() {
                e.per_class[0].label = "zham".into();
            }
            let ham = a.dataset.class_counts.remove("ham").unwrap();
            a.dataset.class_counts.insert("zham".into(), ham);
        });
        s.model.path = s.model.dir.join(name).into();
    })
}

#[tokio::test]
async fn every_answer_takes_each_class_by_index_whatever_the_class_order() {
    let shipped = spawn_app().await;
    let app = spawn_unsorted_classes().await;
    assert_eq!(classes(&app).await, ["zham", "spam"]);
    let texts = texts(8);
    // The same numbers as the shipped model's, `ham` now named `zham`.
    let expected = native(&shipped, &texts, &["ham".into(), "spam".into()]).await;
    let ours = native(&app, &texts, &["zham".into(), "spam".into()]).await;
    for ((label, probs), (our_label, our_probs)) in expected.iter().zip(&ours) {
        let renamed = if label == "ham" { "zham" } else { label };
        assert_eq!(our_label, renamed);
        assert_eq!(our_probs, probs);
    }
    // The native object keeps its keys in name order.
    let raw = app
        .post_json("/predict", &json!({"text": texts[0]}))
        .await
        .text()
        .await
        .unwrap();
    let (spam, zham) = (
        raw.find("\"spam\":").unwrap(),
        raw.find("\"zham\":").unwrap(),
    );
    assert!(spam < zham, "{raw}");
    let batch: Value = app
        .post_json("/predict/batch", &json!({"texts": texts}))
        .await
        .json()
        .await
        .unwrap();
    // V2 columns follow the class order, in JSON and in binary.
    let body: Value = app
        .post_json(INFER, &json_request(&texts))
        .await
        .json()
        .await
        .unwrap();
    let json_probs: Vec<f64> = serde_json::from_value(body["outputs"][1]["data"].clone()).unwrap();
    let (body, header_len) =
        binary_request(&texts, json!({"parameters": {"binary_data_output": true}}));
    let (header, data) = binary_answer(post_binary(&app, body, header_len).await).await;
    let labels_len = header["outputs"][0]["parameters"]["binary_data_size"]
        .as_u64()
        .unwrap() as usize;
    let binary_probs: Vec<f64> = data[labels_len..]
        .chunks(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    for (i, (label, probs)) in ours.iter().enumerate() {
        let row = &batch["predictions"][i];
        assert_eq!(row["label"], label.as_str());
        assert_eq!(row["probabilities"]["zham"].as_f64(), Some(probs[0]));
        assert_eq!(row["probabilities"]["spam"].as_f64(), Some(probs[1]));
        assert_eq!(&json_probs[2 * i..2 * i + 2], probs.as_slice(), "text {i}");
        assert_eq!(
            &binary_probs[2 * i..2 * i + 2],
            probs.as_slice(),
            "text {i}"
        );
    }
    shipped.stop().await;
    app.stop().await;
}
