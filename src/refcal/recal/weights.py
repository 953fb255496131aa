"""Where a base model's weights are, from a target spec: the one resolution SFT and direction editing share."""

from __future__ import annotations

from pathlib import Path

from refcal.errors import TargetSpecError
from refcal.targets.llamacpp import embedded_gguf


def base_location(spec: str) -> tuple[Path, str | None]:
    """(directory, GGUF file name or None) of `hf:PATH` (a folder of transformers weights or a .gguf file),
    `llamacpp:smollm2` or `llamacpp:PATH.gguf` (that GGUF, loaded into transformers); TargetSpecError for
    anything else (an openai: target has no weights) or a path that does not exist."""
    kind, _, rest = spec.partition(":")
    if kind == "llamacpp" and rest:
        path = Path(rest).expanduser() if rest.endswith(".gguf") else embedded_gguf(rest)
    elif kind == "hf" and rest:
        path = Path(rest).expanduser()
    else:
        raise TargetSpecError(f"bad base '{spec}': expected hf:PATH (a folder of transformers weights or a .gguf "
                              "file), llamacpp:smollm2 or llamacpp:PATH.gguf (an openai: target has no weights)")
    if path.suffix == ".gguf":
        if not path.is_file():
            raise TargetSpecError(f"bad base '{spec}': no such GGUF file {path}")
        return path.parent, path.name
    if not (path / "config.json").is_file():
        raise TargetSpecError(f"bad base '{spec}': {path} is not a folder of transformers weights (no config.json)")
    return path, None
