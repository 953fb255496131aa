"""Quick leave-one-source-out loop for developing the pair lane's features (not a shipped benchmark)."""
import sys
import time
from pathlib import Path

import numpy as np

from refcal.judges.agreement import agreement
from refcal.judges.labels import read_rows
from refcal.judges.markers import MarkersJudge
from refcal.judges.pair import PairJudge
from refcal.judges.pair_fit import fit_pair

import os
import refcal.judges.pair as pair_module
_original = pair_module.feature_strings
DROP = tuple(p + ":" for p in os.environ.get("DROP", "").split(",") if p)
if DROP:
    pair_module.feature_strings = lambda q, r: [f for f in _original(q, r) if not f.startswith(DROP)]
files = [Path(f) for f in sys.argv[1:]]
rows, sources = [], []
for path in files:
    for row in read_rows(path, require_label=True):
        rows.append(row)
        sources.append(str((row.model_extra or {}).get("model") or path.stem))
names = list(dict.fromkeys(sources))
markers = MarkersJudge()
C = float(__import__("os").environ.get("C", "4"))
table = []
for held in names:
    train = [i for i, s in enumerate(sources) if s != held]
    test = [i for i, s in enumerate(sources) if s == held]
    t = time.time()
    model = fit_pair([(rows[i].prompt, rows[i].response) for i in train], [rows[i].label for i in train],
                     [sources[i] for i in train], "loso", c=C, calibrate=False)
    judge = PairJudge(model)
    pairs = [(rows[i].prompt, rows[i].response) for i in test]
    pv = judge.verdicts(pairs)
    mv = [markers.judge(*p) for p in pairs]
    cv = [m if m.label != "compliance" or m.score >= 0.95 else p for m, p in zip(mv, pv)]
    gold = [rows[i].label for i in test]
    out = []
    for name, vs in (("markers", mv), ("pair", pv), ("markers>pair", cv)):
        a = agreement(list(zip(gold, [v.label for v in vs])))
        out.append(f"{name} acc {a.accuracy:.3f} F1 {a.f1:.3f} R {a.recall:.3f} P {a.precision:.3f}")
    print(f"{held:<32} n={len(test):<4} " + " | ".join(out), f"({time.time()-t:.0f}s)", flush=True)
