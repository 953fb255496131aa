"""Static (distilled) vs contextual MiniLM embeddings for the head, leave-one-source-out, binary refusal."""
import json
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from tokenizers import Tokenizer

from refcal.judges.embedding import SentenceEmbedder, embedding_model_dir
from refcal.judges.head import opening
from refcal.judges.markers import MarkersJudge

xs = [json.loads(line) for line in open(sys.argv[1])]
st = [json.loads(line) for line in open(sys.argv[2])]
rows = [dict(source=r["model"], response=r["completion"], prompt=r["prompt"],
             y=r["label"] != "full_compliance") for r in xs]
rows += [dict(source="styles", response=r["response"], prompt=r["prompt"], y=r["label"] != "compliance") for r in st]
if len(sys.argv) > 3 and not sys.argv[3].isdigit():
    p = [json.loads(line) for line in open(sys.argv[3])]
    rows += [dict(source="personas", response=r["response"], prompt=r["prompt"], y=r["label"] != "compliance")
             for r in p]
CUT = int(sys.argv[-1]) if sys.argv[-1].isdigit() else 512  # opening length in characters
texts = [r["response"][:CUT] for r in rows] if CUT != 512 else [opening(r["response"]) for r in rows]
y = np.array([r["y"] for r in rows])
src = np.array([r["source"] for r in rows])

table = np.load("/tmp/refcal_static.npy")
tok = Tokenizer.from_file(str(embedding_model_dir() / "tokenizer.json"))
tok.no_padding()
tok.enable_truncation(128)


def static(texts, table):
    t = time.perf_counter()
    enc = tok.encode_batch(texts)
    out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
    for i, e in enumerate(enc):
        ids = e.ids[1:-1] or e.ids
        out[i] = table[ids].mean(0)
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-9
    return out, len(texts) / (time.perf_counter() - t)


centred = table - table.mean(0)
feats = {}
feats["static"], rate = static(texts, table)
print(f"static rate {rate:.0f}/s")
feats["static_centred"], _ = static(texts, centred)
t = time.perf_counter()
feats["contextual"] = SentenceEmbedder().embed(texts)
print(f"contextual rate {len(texts) / (time.perf_counter() - t):.0f}/s")
markers = MarkersJudge()
mk = np.array([markers.judge(r["prompt"], r["response"]).label in ("refusal", "partial_refusal") for r in rows])


def f1(yt, yp):
    tp = (yt & yp).sum(); fp = (~yt & yp).sum(); fn = (yt & ~yp).sum()
    p = tp / max(tp + fp, 1); r = tp / max(tp + fn, 1)
    return (yt == yp).mean(), 2 * p * r / max(p + r, 1e-9)


splits = [("gpt4", "llama2new"), ("llama2new", "gpt4")]
sources = sorted(set(src))
for held in sources:
    splits.append((None, held))
for name, X in feats.items():
    for train, test in splits:
        tr = (src == train) if train else (src != test)
        if train:
            tr = tr | (src == "styles")
        te = src == test
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(X[tr], y[tr])
        p = clf.predict_proba(X[te])[:, 1]
        acc, f = f1(y[te], p > 0.5)
        comb = mk[te] | (p > 0.5)
        acc2, f2 = f1(y[te], comb)
        conf = (p > 0.8) | (p < 0.2)
        comb3 = np.where(mk[te], True, p > 0.5)
        print(f"{name:15s} train={train or 'all-but'}(+styles) test={test:10s} head acc={acc:.3f} F1={f:.3f} | "
              f"markers OR head acc={acc2:.3f} F1={f2:.3f} | head conf cov={conf.mean():.2f}")
macc, mf = f1(y, mk)
for s in sources:
    a, f = f1(y[src == s], mk[src == s]); print(f"markers on {s}: acc={a:.3f} F1={f:.3f}")
