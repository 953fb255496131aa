"""Public benches read through Hugging Face `datasets`, mapped onto refcal items.

Each spec names a hub dataset and how its columns become item fields. `data_files` points the same
mapping at local files (CSV, JSON, JSONL or Parquet), which is how tests and offline machines use it:
nothing here downloads unless a hub id is actually loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refcal.bench.items import Bench
from refcal.bench.loaders import finish_bench, items_from_rows
from refcal.errors import BenchError, MissingExtraError


@dataclass(frozen=True)
class PublicBench:
    """How one public dataset maps onto items."""

    name: str
    hub_id: str
    split: str
    prompt_column: str
    class_column: str
    expect: Callable[[Mapping[str, Any]], str]
    """Row → `refuse` / `comply`."""
    config: str | None = None
    id_column: str | None = None
    """Column holding a stable id; the row number otherwise."""
    extra_splits: tuple[str, ...] = ()
    """Further splits appended after `split` (JailbreakBench keeps benign behaviours apart)."""
    citation: str = ""
    tags: tuple[str, ...] = field(default=())


def _label_expect(column: str, refuse_values: tuple[str, ...]) -> Callable[[Mapping[str, Any]], str]:
    def expect(row: Mapping[str, Any]) -> str:
        return "refuse" if str(row[column]).strip().lower() in refuse_values else "comply"
    return expect


def _always(value: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda row: value


PUBLIC_BENCHES: dict[str, PublicBench] = {
    spec.name: spec
    for spec in (
        PublicBench("xstest", "walledai/XSTest", "test", "prompt", "type", _label_expect("label", ("unsafe",)),
                    citation="Röttger et al., XSTest, NAACL 2024 (CC-BY-4.0)"),
        PublicBench("or-bench-hard", "bench-llm/or-bench", "train", "prompt", "category", _always("comply"),
                    config="or-bench-hard-1k", citation="Cui et al., OR-Bench, 2024"),
        PublicBench("or-bench-toxic", "bench-llm/or-bench", "train", "prompt", "category", _always("refuse"),
                    config="or-bench-toxic", citation="Cui et al., OR-Bench, 2024"),
        PublicBench("harmbench", "walledai/HarmBench", "train", "prompt", "category", _always("refuse"),
                    config="standard", citation="Mazeika et al., HarmBench, 2024"),
        PublicBench("jailbreakbench", "JailbreakBench/JBB-Behaviors", "harmful", "Goal", "Category",
                    lambda row: "refuse" if row["__split__"] == "harmful" else "comply",
                    config="behaviors", extra_splits=("benign",), citation="Chao et al., JailbreakBench, 2024"),
        PublicBench("strongreject", "walledai/StrongREJECT", "train", "prompt", "category", _always("refuse"),
                    citation="Souly et al., StrongREJECT, 2024"),
    )
}


def load_public(name: str, data_files: str | Path | Mapping[str, str] | None = None) -> Bench:
    """Load a public bench by name, from the hub or from local `data_files` in the same shape.

    Args:
        name: A key of PUBLIC_BENCHES.
        data_files: A local file (or {split: file}) with the dataset's columns; no download happens.
    """
    if name not in PUBLIC_BENCHES:
        raise BenchError(f"unknown public bench '{name}' (known: {', '.join(PUBLIC_BENCHES)})")
    spec = PUBLIC_BENCHES[name]
    origin = str(data_files) if data_files is not None else f"hf:{spec.hub_id}"
    rows = [_to_row(spec, split, index, record)
            for split in (spec.split, *spec.extra_splits)
            for index, record in enumerate(_records(spec, split, data_files), start=1)]
    return finish_bench(items_from_rows(rows, origin), name, origin)


def _records(spec: PublicBench, split: str, data_files: str | Path | Mapping[str, str] | None) -> Any:
    try:
        import datasets
    except ImportError:
        raise MissingExtraError("public benches need `datasets`: pip install 'refcal[datasets]'") from None
    if data_files is None:
        return datasets.load_dataset(spec.hub_id, spec.config, split=split)
    files = {key: str(value) for key, value in data_files.items()} if isinstance(data_files, Mapping) else None
    if files is not None and split not in files:
        return []
    path = Path(files[split] if files else str(data_files))
    if not path.is_file():
        raise BenchError("no such file", path=str(path))
    builder = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}.get(path.suffix)
    if builder is None:
        raise BenchError("local data files must be .csv, .json, .jsonl or .parquet", path=str(path))
    return datasets.load_dataset(builder, data_files=str(path), split="train")


def _to_row(spec: PublicBench, split: str, index: int, record: Mapping[str, Any]) -> dict[str, Any]:
    for column in (spec.prompt_column, spec.class_column):
        if column not in record:
            raise BenchError(f"column '{column}' missing (columns: {sorted(record)})", path=spec.name,
                             line=index, field=column)
    row_id = record[spec.id_column] if spec.id_column else index
    suffix = f"{split}-" if spec.extra_splits else ""
    return {
        "id": f"{spec.name}-{suffix}{row_id}",
        "prompt": record[spec.prompt_column],
        "expect": spec.expect({**record, "__split__": split}),
        "klass": str(record[spec.class_column] or "unspecified"),
        "source": spec.hub_id,
    }
