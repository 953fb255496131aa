"""The corpus side of an SFT run: the user-side texts checked against every frozen bench for contamination, and
the rows' token lengths after the model's chat template (rows read by `refcal.corpus.reader.read_chat_corpus`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refcal.bench.freeze import read_locks
from refcal.corpus import ContaminationOptions, CorpusText
from refcal.corpus.reader import ChatRow
from refcal.recal.contrastive import ContrastivePair
from refcal.recal.receipt import ContaminationSummary
from refcal.recal.sft.errors import ContaminationError, TrainingSetupError


def corpus_texts(path: Path, rows: Sequence[ChatRow], pairs_path: Path | None = None,
                 pairs: Sequence[ContrastivePair] = ()) -> list[CorpusText]:
    """The user-side texts that the contamination check compares with frozen benches: every user message of a
    chat row, and both prompts of a pair."""
    texts = [CorpusText(str(path), row.line, f"messages.{index}.content", message["content"])
             for row in rows for index, message in enumerate(row.messages) if message["role"] == "user"]
    for pair in pairs:
        texts.append(CorpusText(str(pairs_path), pair.line, "harmful", pair.harmful))
        texts.append(CorpusText(str(pairs_path), pair.line, "lookalike", pair.lookalike))
    return texts


def check_contamination(texts: Sequence[CorpusText], locks: Path, allow: bool,
                        options: ContaminationOptions | None = None) -> ContaminationSummary:
    """Check the texts against every bench frozen in `locks`: ContaminationError on a hit unless `allow`.
    With no bench frozen at all there is nothing to check against; the summary says so in `note`."""
    from refcal.corpus import find_contamination, frozen_benches, sentence_embedding

    if not read_locks(locks):
        return ContaminationSummary.from_report(None, allow, note=f"no frozen bench in {locks}: nothing to check "
                                                                  "against")
    options = options or ContaminationOptions()
    benches = [bench for _, bench in frozen_benches(None, locks)]
    embed, reason = sentence_embedding(options)
    report = find_contamination(texts, benches, options, embed, no_embed_reason=reason)
    if report.hits and not allow:
        raise ContaminationError(report)
    return ContaminationSummary.from_report(report, allow)


def length_counts(tokenizer: Any, rows: Sequence[ChatRow], max_length: int, path: Path) -> dict[str, int]:
    """How many rows `max_length` cuts, and how many it leaves without a completion token (TRL drops those);
    TrainingSetupError when that is every row."""
    truncated = dropped = 0
    for row in rows:
        prompt = tokenizer.apply_chat_template(row.messages[:-1], add_generation_prompt=True, return_dict=False)
        whole = tokenizer.apply_chat_template(row.messages, return_dict=False)
        truncated += len(whole) > max_length
        dropped += len(prompt) >= max_length
    if dropped == len(rows):
        raise TrainingSetupError(f"every prompt in {path} fills max_length = {max_length} tokens: nothing is left "
                                 "to learn; raise max_length")
    return {"truncated": truncated, "dropped": dropped}
