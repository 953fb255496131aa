"""Ablation (reported as such: these choices are scored on the held-out side, so they are NOT a clean test):
opening length x class_weight x C, binary F1 / 3-class agreement in both leave-one-model-out directions."""
import json, sys
import numpy as np, torch
from sklearn.linear_model import LogisticRegression
sys.path.insert(0, "."); sys.path.insert(0, "../benchmarks")
import embed
from refcal.judges.markers import normalise
from prototype import HUMAN, CLASSES, binary
rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/xstest_dev_completions.jsonl")]
gold = np.array([CLASSES.index(HUMAN[r["label"]]) for r in rows])
torch.set_num_threads(2); embed.load(2)
print(f"{'chars':>5} {'weight':>8} {'C':>5} | gpt4->llama2 F1 3cls | llama2->gpt4 F1 3cls | mean F1")
for chars in (128, 256, 512):
    x = embed.embed([normalise(r["completion"])[:chars] for r in rows])
    for cw in ("balanced", None):
        for C in (0.1, 1.0, 10.0):
            out = []
            for a, b in (("gpt4", "llama2new"), ("llama2new", "gpt4")):
                tr = np.array([r["model"] == a for r in rows]); te = ~tr
                clf = LogisticRegression(C=C, max_iter=3000, class_weight=cw).fit(x[tr], gold[tr])
                p = clf.predict_proba(x[te]); cls = clf.classes_
                pref = p[:, [k for k, c in enumerate(cls) if c != 0]].sum(1)
                f = binary([(g != 0, q > 0.5) for g, q in zip(gold[te], pref)])["F1"]
                three = np.mean(cls[p.argmax(1)] == gold[te])
                out += [f, three]
            print(f"{chars:>5} {str(cw):>8} {C:>5} | {out[0]:.3f} {out[1]:.3f}          | {out[2]:.3f} {out[3]:.3f}          | {(out[0]+out[2])/2:.3f}")
