"""nbserve's Open Inference Protocol (KServe V2) routes driven by real
clients nobody here wrote: tritonclient[http] with its defaults (binary tensor
data both ways) and with binary_data=False, and open-inference-openapi
(JSON). Their results must equal /predict's for the same texts: the same
labels and the very same probabilities. The server is a repository of both
shipped models, which tritonclient's repository calls list, unload and load.
Clients pinned and hash-checked in
scripts/test-v2-clients-requirements.txt (scripts/test-v2-clients.sh).
"""

from __future__ import annotations

import csv
import importlib.metadata
import re

import numpy as np
import pytest
import tritonclient.http as triton
from open_inference.openapi.client import OpenInferenceClient
from open_inference.openapi.core.api_error import ApiError
from open_inference.openapi.types import InferenceRequest, RequestInput, RequestOutput
from tritonclient.utils import InferenceServerException

from conftest import ROOT, start_server

MODEL = "spam-nb"
OTHER = "spam-cnb"
TOKEN = "v2-clients-token"


def sample_texts(n: int) -> list[str]:
    with open(ROOT / "tests" / "data" / "sample.csv", newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:n]
    return texts + ["ünïcödé wörds: claim your FREE prize now €€€", "lunch on friday?"]


TEXTS = sample_texts(30)


@pytest.fixture(scope="module")
def server(nbserve_bin, tmp_path_factory, figures):
    """The shipped model on a free loopback port, stopped after the module."""
    work = tmp_path_factory.mktemp("v2-clients")
    (work / "models").mkdir()
    for name in ("spam-nb", "spam-cnb"):
        (work / "models" / f"{name}.json").write_bytes((ROOT / "models" / f"{name}.json").read_bytes())
    # A repository of both shipped models, spam-nb the default (the name model.path gives).
    server = start_server(nbserve_bin, work, {"ADMIN__TOKEN": TOKEN,
                                              "MODEL__REPOSITORY": str(work / "models")})
    figures("clients", f"tritonclient {importlib.metadata.version('tritonclient')}, "
                       f"open-inference-openapi {importlib.metadata.version('open-inference-openapi')}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def native(server):
    """/predict, one text at a time: the reference every client must
    reproduce. (classes, labels, probabilities in class order)."""
    classes = server.get(f"/v2/models/{MODEL}").json()["classes"]
    answers = [server.post_json("/predict", {"text": t}).json() for t in TEXTS]
    probs = np.array([[p["probabilities"][c] for c in classes] for p in answers])
    return classes, [p["label"] for p in answers], probs


def same_as_predict(native, labels, probs) -> None:
    classes, native_labels, native_probs = native
    assert list(labels) == native_labels, (list(labels), native_labels)
    assert probs.shape == (len(TEXTS), len(classes)), probs.shape
    # The same code scores both: the numbers are identical, not close.
    assert np.array_equal(probs, native_probs), np.abs(probs - native_probs).max()


def feedback_accepted(server, native, prediction_ids: str) -> None:
    ids = prediction_ids.split(",")
    assert len(ids) == len(TEXTS), len(ids)
    answer = server.post_json("/feedback", {"prediction_id": ids[0], "label": native[0][0]})
    assert answer.status == 202, answer


# ------------------------------------------------------------- tritonclient
@pytest.fixture(scope="module")
def triton_client(server):
    return triton.InferenceServerClient(url=server.url.split("://", 1)[1], network_timeout=30.0)


def test_tritonclient_health_server_and_model_metadata(triton_client):
    client = triton_client
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert not client.is_model_ready("no-such-model")
    meta = client.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"], meta
    model = client.get_model_metadata(MODEL)
    assert model["inputs"][0] == {"name": "text", "datatype": "BYTES", "shape": [-1]}, model
    assert [o["name"] for o in model["outputs"]] == ["label", "probabilities"], model


@pytest.mark.parametrize("binary", [True, False], ids=["defaults, binary tensor data both ways",
                                                       "binary_data=False, JSON"])
def test_tritonclient_infer_equals_predict(triton_client, server, native, binary):
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
    result = triton_client.infer(MODEL, [text], outputs=outputs, request_id="triton-1")
    response = result.get_response()
    assert response["id"] == "triton-1", response
    for out in response["outputs"]:
        assert ("binary_data_size" in out.get("parameters", {})) == binary, out
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
    same_as_predict(native, labels, result.as_numpy("probabilities"))
    feedback_accepted(server, native, response["parameters"]["prediction_ids"])


def test_tritonclient_one_requested_output(triton_client, native):
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"hello", b"FREE money"], dtype=np.object_))
    result = triton_client.infer(MODEL, [text], outputs=[triton.InferRequestedOutput("probabilities")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    assert result.as_numpy("label") is None
    assert result.as_numpy("probabilities").shape == (2, len(native[0]))


def test_tritonclient_unknown_model_404_and_fp32_input_400(triton_client):
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hello"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as unknown:
        triton_client.infer("no-such-model", [text])
    assert unknown.value.status() == "404", (unknown.value.status(), unknown.value.message())
    wrong = triton.InferInput("text", [1], "FP32")
    wrong.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    with pytest.raises(InferenceServerException) as fp32:
        triton_client.infer(MODEL, [wrong])
    assert fp32.value.status() == "400", (fp32.value.status(), fp32.value.message())
    assert "BYTES" in fp32.value.message(), fp32.value.message()


# ------------------------------------------------------- open-inference-openapi
@pytest.fixture(scope="module")
def oip(server):
    return OpenInferenceClient(base_url=server.url, timeout=30)


def test_open_inference_health_server_and_model_version_metadata(oip):
    oip.check_server_liveness()
    oip.check_server_readiness()
    oip.check_model_readiness(MODEL)
    assert "binary_tensor_data" in oip.read_server_metadata().extensions
    model = oip.read_model_metadata(MODEL)
    assert model.name == MODEL and model.versions, model
    oip.check_model_version_readiness(MODEL, model.versions[0])
    assert oip.read_model_version_metadata(MODEL, model.versions[0]).name == MODEL


def test_open_inference_infer_and_version_infer_equal_predict(oip, server, native):
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
        same_as_predict(native, labels, probs.reshape(by_name["probabilities"].shape))
        feedback_accepted(server, native, response.parameters["prediction_ids"])


def test_open_inference_wrong_datatype_400_and_unknown_model_404(oip):
    request = InferenceRequest(inputs=[RequestInput(name="text", shape=[1], datatype="INT64", data=[1])])
    with pytest.raises(ApiError) as wrong:
        oip.model_infer(MODEL, request=request)
    assert wrong.value.status_code == 400, wrong.value
    with pytest.raises(ApiError) as unknown:
        oip.read_model_metadata("no-such-model")
    assert unknown.value.status_code == 404, unknown.value


# ------------------------------------------------------ model repository
def test_tritonclient_lists_unloads_and_loads_a_model(triton_client, server, native):
    client = triton_client
    admin = {"Authorization": f"Bearer {TOKEN}"}
    state = lambda: {m["name"]: m["state"] for m in client.get_model_repository_index(headers=admin)}
    assert state() == {MODEL: "READY", OTHER: "READY"}
    with pytest.raises(InferenceServerException):
        client.get_model_repository_index()  # no admin token

    text = triton.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_))
    expected = [server.post_json(f"/models/{OTHER}/predict", {"text": t}).json()["label"] for t in TEXTS]

    client.unload_model(OTHER, headers=admin)
    # (Its /ready is 503 now, as tests/api/models.rs checks; not asked here,
    # since every 5xx is logged at ERROR, which the last test forbids.)
    assert state() == {MODEL: "READY", OTHER: "UNAVAILABLE"}
    # The default model keeps answering, and cannot be unloaded.
    same_as_predict(native, *infer_default(client, text))
    with pytest.raises(InferenceServerException):
        client.unload_model(MODEL, headers=admin)
    assert client.is_model_ready(MODEL)

    client.load_model(OTHER, headers=admin)
    assert state() == {MODEL: "READY", OTHER: "READY"}
    assert client.is_model_ready(OTHER)
    labels = client.infer(OTHER, [text]).as_numpy("label")
    assert [l.decode() for l in labels] == expected


def infer_default(client, text):
    result = client.infer(MODEL, [text])
    return [l.decode() for l in result.as_numpy("label")], result.as_numpy("probabilities")


# ------------------------------------------------------------------ server
def test_the_server_survived_every_client(server):
    assert server.alive()


def test_no_error_or_panic_in_the_server_log(server):
    bad = [line for line in server.log_text().splitlines() if re.search(r'"level":"ERROR"|panicked', line)]
    assert not bad, bad[:10]
