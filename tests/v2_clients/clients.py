"""Drive nbserve's Open Inference Protocol routes with real clients nobody
here wrote, and check their results equal /predict's for the same texts.

    python tests/v2_clients/clients.py http://127.0.0.1:PORT

Run by scripts/test-v2-clients.sh (pinned, hash-checked clients). Prints one
PASS/FAIL line per check and `N passed, M failed`; exits 1 if any failed.
"""

import csv
import importlib.metadata
import json
import sys
import traceback
import urllib.request

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException
from open_inference.openapi.client import OpenInferenceClient
from open_inference.openapi.core.api_error import ApiError
from open_inference.openapi.types import InferenceRequest, RequestInput, RequestOutput

URL = sys.argv[1].rstrip("/")
HOSTPORT = URL.split("://", 1)[1]
MODEL = "spam-nb"
results = {"passed": 0, "failed": 0}


def check(name, fn):
    try:
        fn()
    except Exception:  # a failed check, whatever raised
        results["failed"] += 1
        print(f"FAIL: {name}")
        print("      " + traceback.format_exc().strip().replace("\n", "\n      "))
    else:
        results["passed"] += 1
        print(f"PASS: {name}")


def post_json(path, body):
    req = urllib.request.Request(
        URL + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read())


def sample_texts(n):
    with open("tests/data/sample.csv", newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:n]
    return texts + ["ünïcödé wörds: claim your FREE prize now €€€", "lunch on friday?"]


TEXTS = sample_texts(30)
META = json.loads(urllib.request.urlopen(f"{URL}/v2/models/{MODEL}", timeout=30).read())
CLASSES = META["classes"]
# /predict, one text at a time: the reference every client must reproduce.
NATIVE = [post_json("/predict", {"text": t})[1] for t in TEXTS]
NATIVE_LABELS = [p["label"] for p in NATIVE]
NATIVE_PROBS = np.array([[p["probabilities"][c] for c in CLASSES] for p in NATIVE])


def same_as_predict(labels, probs):
    assert list(labels) == NATIVE_LABELS, (list(labels), NATIVE_LABELS)
    assert probs.shape == (len(TEXTS), len(CLASSES)), probs.shape
    # The same code scores both: the numbers are identical, not close.
    assert np.array_equal(probs, NATIVE_PROBS), np.abs(probs - NATIVE_PROBS).max()


def feedback_accepted(prediction_ids):
    ids = prediction_ids.split(",")
    assert len(ids) == len(TEXTS), len(ids)
    status, body = post_json("/feedback", {"prediction_id": ids[0], "label": CLASSES[0]})
    assert status == 202, (status, body)


# ------------------------------------------------------------- tritonclient
TRITON = "tritonclient " + importlib.metadata.version("tritonclient")
OIP = "open-inference-openapi " + importlib.metadata.version("open-inference-openapi")
client = triton.InferenceServerClient(url=HOSTPORT, network_timeout=30.0)


def triton_health():
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert not client.is_model_ready("no-such-model")
    meta = client.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"], meta
    model = client.get_model_metadata(MODEL)
    assert model["inputs"][0] == {"name": "text", "datatype": "BYTES", "shape": [-1]}, model
    assert [o["name"] for o in model["outputs"]] == ["label", "probabilities"], model


def triton_infer(binary):
    def run():
        data = np.array([t.encode() for t in TEXTS], dtype=np.object_)
        text = triton.InferInput("text", [len(TEXTS)], "BYTES")
        if binary:
            # The client's defaults: binary input, no outputs named, so it asks
            # for every output as binary data.
            text.set_data_from_numpy(data)
            outputs = None
        else:
            text.set_data_from_numpy(data, binary_data=False)
            outputs = [
                triton.InferRequestedOutput("label", binary_data=False),
                triton.InferRequestedOutput("probabilities", binary_data=False),
            ]
        result = client.infer(MODEL, [text], outputs=outputs, request_id="triton-1")
        response = result.get_response()
        assert response["id"] == "triton-1", response
        for out in response["outputs"]:
            assert ("binary_data_size" in out.get("parameters", {})) == binary, out
        labels = [
            v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()
        ]
        same_as_predict(labels, result.as_numpy("probabilities"))
        feedback_accepted(response["parameters"]["prediction_ids"])

    return run


def triton_one_output():
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"hello", b"FREE money"], dtype=np.object_))
    result = client.infer(MODEL, [text], outputs=[triton.InferRequestedOutput("probabilities")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    assert result.as_numpy("label") is None
    assert result.as_numpy("probabilities").shape == (2, len(CLASSES))


def triton_errors():
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hello"], dtype=np.object_))
    try:
        client.infer("no-such-model", [text])
        raise AssertionError("unknown model accepted")
    except InferenceServerException as e:
        assert e.status() == "404", (e.status(), e.message())
    wrong = triton.InferInput("text", [1], "FP32")
    wrong.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    try:
        client.infer(MODEL, [wrong])
        raise AssertionError("FP32 input accepted")
    except InferenceServerException as e:
        assert e.status() == "400", (e.status(), e.message())
        assert "BYTES" in e.message(), e.message()


check(f"{TRITON}: health, server and model metadata", triton_health)
check(f"{TRITON}: infer with its defaults (binary tensor data both ways) equals /predict", triton_infer(True))
check(f"{TRITON}: infer with binary_data=False (JSON) equals /predict", triton_infer(False))
check(f"{TRITON}: one requested output", triton_one_output)
check(f"{TRITON}: unknown model 404, FP32 input 400", triton_errors)

# ------------------------------------------------------- open-inference-openapi
oip = OpenInferenceClient(base_url=URL, timeout=30)


def oip_health_and_metadata():
    oip.check_server_liveness()
    oip.check_server_readiness()
    oip.check_model_readiness(MODEL)
    assert "binary_tensor_data" in oip.read_server_metadata().extensions
    model = oip.read_model_metadata(MODEL)
    assert model.name == MODEL and model.versions, model
    oip.check_model_version_readiness(MODEL, model.versions[0])
    assert oip.read_model_version_metadata(MODEL, model.versions[0]).name == MODEL


def oip_infer():
    version = oip.read_model_metadata(MODEL).versions[0]
    request = InferenceRequest(
        id="oip-1",
        inputs=[RequestInput(name="text", shape=[len(TEXTS)], datatype="BYTES", data=TEXTS)],
        outputs=[RequestOutput(name="label"), RequestOutput(name="probabilities")],
    )
    for response in (oip.model_infer(MODEL, request=request),
                     oip.model_version_infer(MODEL, version, request=request)):
        assert response.id == "oip-1" and response.model_name == MODEL, response
        by_name = {o.name: o for o in response.outputs}
        labels = by_name["label"].data.__root__
        probs = np.array(by_name["probabilities"].data.__root__, dtype=np.float64)
        same_as_predict(labels, probs.reshape(by_name["probabilities"].shape))
        feedback_accepted(response.parameters["prediction_ids"])


def oip_errors():
    request = InferenceRequest(
        inputs=[RequestInput(name="text", shape=[1], datatype="INT64", data=[1])]
    )
    try:
        oip.model_infer(MODEL, request=request)
        raise AssertionError("INT64 input accepted")
    except ApiError as e:
        assert e.status_code == 400, e
    try:
        oip.read_model_metadata("no-such-model")
        raise AssertionError("unknown model answered")
    except ApiError as e:
        assert e.status_code == 404, e


check(f"{OIP}: health, server and model (version) metadata", oip_health_and_metadata)
check(f"{OIP}: infer and version infer (JSON) equal /predict", oip_infer)
check(f"{OIP}: wrong datatype 400, unknown model 404", oip_errors)

print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
