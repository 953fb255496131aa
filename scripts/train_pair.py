"""Train the pair lane that ships in the package (src/refcal/judges/heads/pair.npz) from every labelled
file refcal may train on, and measure the shipped cascade leave-one-source-out on the same files: those
figures travel inside the model file, and every receipt of the default judge carries them.

    python scripts/train_pair.py [../shared/data/xstest_dev_completions.jsonl] [--out PATH]

A row's source is its `model` field when it has one (XSTest: gpt4, llama2new), else its file's name. The
XSTest file lives beside the repository (../shared/data), not in it; without it the model trains on
research/judge_data/ alone. Needs the `train` extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from refcal.judges.labels import read_rows
from refcal.judges.pair_fit import DEFAULT_C, fit_pair, leave_one_source_out

ROOT = Path(__file__).resolve().parents[1]


def labelled(files: list[Path]) -> tuple[list[tuple[str, str]], list, list[str], str]:
    pairs, labels, sources, seen = [], [], [], []
    for path in files:
        rows = read_rows(path, require_label=True)
        seen.append(f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}")
        for row in rows:
            pairs.append((row.prompt, row.response))
            labels.append(row.label)
            sources.append(str((row.model_extra or {}).get("model") or path.stem))
    return pairs, labels, sources, "; ".join(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xstest", nargs="?", type=Path,
                        default=ROOT.parent / "shared/data/xstest_dev_completions.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "src/refcal/judges/heads/pair.npz")
    parser.add_argument("--c", type=float, default=DEFAULT_C, help="inverse L2 strength of the logistic regression")
    args = parser.parse_args()
    files = ([args.xstest] if args.xstest.is_file() else []) + sorted((ROOT / "research/judge_data").glob("*.jsonl"))
    pairs, labels, sources, trained_on = labelled(files)
    print(f"{len(pairs)} rows from {len(files)} files; measuring leave-one-source-out …", flush=True)
    agreement = leave_one_source_out(pairs, labels, sources, args.c)
    for source, errors in agreement.items():
        print(f"  {source:<34} rows {errors.rows:>4}  accuracy {errors.accuracy:.3f}  "
              f"Se {errors.sensitivity or 0:.3f}  Sp {errors.specificity or 0:.3f}")
    model = fit_pair(pairs, labels, sources, trained_on, args.c)
    model = type(model)(weights=model.weights, bias=model.bias, temperature=model.temperature,
                        trained_on=trained_on, agreement=agreement)
    model.save(args.out)
    print(f"temperature {model.temperature:.3f}; wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), "
          f"version {model.version}")


if __name__ == "__main__":
    main()
