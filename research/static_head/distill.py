"""Distil all-MiniLM-L6-v2 into a static token table (model2vec's idea): each vocabulary token run alone
through the transformer, its output vector kept. Writes /tmp/refcal_static.npy (vocab × 384, float32)."""
import time

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from refcal.judges.embedding import embedding_model_dir

torch.set_num_threads(2)
path = embedding_model_dir()
tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
model = AutoModel.from_pretrained(path, local_files_only=True).eval()
vocab = tok.vocab_size
start = time.perf_counter()
out = np.zeros((vocab, 384), dtype=np.float32)
with torch.inference_mode():
    for first in range(0, vocab, 1024):
        ids = torch.arange(first, min(first + 1024, vocab))
        batch = torch.stack([torch.full_like(ids, tok.cls_token_id), ids, torch.full_like(ids, tok.sep_token_id)], 1)
        hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
        out[first:first + len(ids)] = hidden.mean(1).numpy()
print(f"distilled {vocab} tokens in {time.perf_counter() - start:.1f}s")
np.save("/tmp/refcal_static.npy", out)
