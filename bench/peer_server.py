"""The load-test peer: scikit-learn CountVectorizer(binary=True) + BernoulliNB
behind FastAPI/uvicorn, with the same request shapes as nbserve.

    python bench/peer_server.py train TRAIN.csv MODEL.joblib    # fit once
    NBSERVE_PEER_MODEL=MODEL.joblib python -m uvicorn peer_server:app \
        --app-dir bench --host 127.0.0.1 --port 18082 --workers 2

bench/load.sh does both. Fitting happens once, outside the workers, so every
worker serves the identical model and start-up is a joblib load.
"""

import csv
import os
import sys
import uuid

csv.field_size_limit(sys.maxsize)


def train(data_csv, out_path):
    import joblib
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import BernoulliNB
    from sklearn.pipeline import make_pipeline

    with open(data_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows]
    labels = [r["label"].strip() for r in rows]
    model = make_pipeline(CountVectorizer(binary=True), BernoulliNB(alpha=1.0))
    model.fit(texts, labels)
    joblib.dump(model, out_path)
    vocab = len(model[0].vocabulary_)
    print(f"peer: trained on {len(texts)} documents, vocabulary {vocab}", file=sys.stderr)


def make_app():
    import joblib
    from fastapi import FastAPI
    from pydantic import BaseModel

    model = joblib.load(os.environ["NBSERVE_PEER_MODEL"])
    classes = [str(c) for c in model.classes_]
    version = "peer"

    class PredictRequest(BaseModel):
        text: str

    class BatchRequest(BaseModel):
        texts: list[str]

    def answer(label, probs):
        return {
            "prediction_id": str(uuid.uuid4()),
            "label": str(label),
            "probabilities": dict(zip(classes, map(float, probs))),
            "model_version": version,
        }

    api = FastAPI()

    @api.get("/ready")
    def ready():
        return {"status": "ready"}

    # Plain `def` handlers run in the threadpool, as a typical scikit-learn
    # service is written (predict_proba is CPU-bound and blocking).
    @api.post("/predict")
    def predict(req: PredictRequest):
        probs = model.predict_proba([req.text])[0]
        return answer(classes[probs.argmax()], probs)

    @api.post("/predict/batch")
    def predict_batch(req: BatchRequest):
        probs = model.predict_proba(req.texts)
        return {
            "predictions": [answer(classes[p.argmax()], p) for p in probs],
            "model_version": version,
        }

    return api


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "train":
        train(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
elif os.environ.get("NBSERVE_PEER_MODEL"):
    app = make_app()
