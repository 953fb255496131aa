#!/usr/bin/env bash
# Trains the head that ships in the package (src/refcal/judges/heads/default.npz) from every labelled
# file refcal may train on: XSTest's 900 human-labelled dev completions (../shared/data, not in the
# repository) and the responses written for refcal in research/judge_data/. The head records the name
# and sha256 of each file it saw; benchmarks/judge_agreement.py measures the recipe leave-one-source-out.
#
#   bash scripts/train_head.sh [PATH/TO/xstest_dev_completions.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
xstest="${1:-../shared/data/xstest_dev_completions.jsonl}"
labels=(--labels "$xstest")
for file in research/judge_data/*.jsonl; do labels+=(--labels "$file"); done
HF_HUB_OFFLINE=1 refcal judge train "${labels[@]}" --out src/refcal/judges/heads/default.npz
