"""Timing of embed.py: cold load, batched throughput on ~300-token texts, single-text latency (2 threads)."""
import json, statistics, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(2)
import embed
embed.load(2)
cold = time.perf_counter() - t0
rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/xstest_dev_completions.jsonl")]
tok, _ = embed._load(2)
texts = [r["completion"] for r in rows]
lens = [len(tok(t)["input_ids"]) for t in texts]
# ~300-token responses: the completions truncated at 256 tokens (model max); report their token lengths
long_texts = [t for t, n in zip(texts, lens) if n >= 250][:256]
import os; print("loadavg before run:", os.getloadavg())
print(f"cold load (import torch+transformers+weights): {cold:.2f}s  threads={torch.get_num_threads()}")
print(f"completion tokens: median={statistics.median(lens)} p90={sorted(lens)[int(.9*len(lens))]}; long set n={len(long_texts)} (>=250 tok, truncated to 256)")
embed.embed(long_texts[:8])  # warm-up
for bs in (16, 32, 64):
    t = time.perf_counter(); embed.embed(long_texts, batch_size=bs); d = time.perf_counter() - t
    print(f"batched 256-token texts bs={bs}: {len(long_texts)/d:.1f} texts/s")
t = time.perf_counter(); embed.embed(texts, batch_size=32); d = time.perf_counter() - t
print(f"all 900 completions (mixed lengths, bs=32): {900/d:.1f} texts/s")
openings = [t[:512] for t in texts]
t = time.perf_counter(); embed.embed(openings, batch_size=32); d = time.perf_counter() - t
print(f"all 900 openings (first 512 chars, bs=32): {900/d:.1f} texts/s")
lat = []
for s in long_texts[:30]:
    t = time.perf_counter(); embed.embed([s]); lat.append(time.perf_counter() - t)
print(f"single 256-token text latency: median={1000*statistics.median(lat):.1f} ms  max={1000*max(lat):.1f} ms")
lat = []
for s in openings[:30]:
    t = time.perf_counter(); embed.embed([s]); lat.append(time.perf_counter() - t)
print(f"single 512-char opening latency: median={1000*statistics.median(lat):.1f} ms")
