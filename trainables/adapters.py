"""Saving and loading memlaw adapters, so that a copied adapter folder finds its base and loads.

Loading any memlaw adapter, either placement, on any machine with memlaw installed:

    from trainables.adapters import load_adapter; model = load_adapter("path/to/adapter")

Why a loader, and not plain `peft.PeftModel.from_pretrained`: the paper placement's LoRA targets
`model.layers.N.mlp.memory`, a zero d -> d map that memlaw inserts beside block N's MLP
(trainables.model.ParallelMemoryMLP). A plain base model has no such module, so plain PEFT fails
with `NoMatchingPeftModuleError: Target modules {...mlp.memory} not found`. PEFT's custom-module
mechanism (`LoraConfig._register_custom_module`) maps a module class to a LoRA layer at run time
only: adapter_config.json records none of it, and the module must exist before PEFT can wrap it.
So paper adapters need memlaw's code, and `load_adapter` is that code: it rebuilds the base from
its recorded name, refuses a base whose weights hash differently, redoes the wrapping and calls
`PeftModel.from_pretrained`. Placement `peft` adapters load with plain PEFT on the same base
(`load_recorded_base` gives it).

An adapter folder holds PEFT's adapter_config.json and adapter_model.safetensors, plus
  memlaw_adapter.json   placement, paper layer, the base (portable name, model fields, dtype, sha256)
                        and the one line that loads it
  README.md             the same, for people (it replaces PEFT's template card, whose base_model
                        was the absolute path of the folder the base was read from)
memlaw's facts are not keys of adapter_config.json: PEFT hands every key there to LoraConfig and
drops an unknown one with a warning that the user's PEFT is too old (peft/config.py,
`from_peft_type`), which would be false.

The base is named portably, never by an absolute path: a tiny preset or `package:NAME` by its
config name (with `/gguf_file`), a hub id as itself, a local folder by its folder name only (the
loader then needs `base="/where/it/is"`). `base_model_name_or_path` in adapter_config.json is that
name. The sha256 covers the base's weights as stored: each tensor of its safetensors files (name,
dtype, shape, bytes, in name order: a re-save or re-shard leaves it unchanged), else the bytes of
its weight files (GGUF, .bin). It is computed once per process and weights file, at sha256's speed
(SmolLM2's 98 MB GGUF: a quarter second here; an 8B model's 16 GB: tens of seconds).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables.config import PACKAGE_PREFIX, ModelConfig, TrialConfig
from trainables.model import ZeroMap, load_base, paper_layer, resolve_device, resolve_source, wrap_paper_layer

ADAPTER_META = "memlaw_adapter.json"
META_FORMAT = 2  # 1: placement and layer only (no base recorded)
#: The documented line; README.md and memlaw_adapter.json carry it with this placeholder path.
LOAD_LINE = 'from trainables.adapters import load_adapter; model = load_adapter("{path}")'
PLACEHOLDER = "path/to/adapter"
_CHUNK = 1 << 23


class AdapterBaseError(ValueError):
    """The base model an adapter was trained on cannot be found, or the one found has other weights."""


# -- naming and hashing the base ------------------------------------------------------------------
def base_kind(model: ModelConfig) -> str:
    """tiny preset | package | local folder | hub id: how the loader finds the base again."""
    if model.is_tiny:
        return "tiny preset"
    if model.name.startswith(PACKAGE_PREFIX):
        return "package"
    return "local folder" if os.path.isdir(os.path.expanduser(model.name)) else "hub id"


def _recorded_name(model: ModelConfig) -> str:
    """The config's name, or a local folder's last component only: never an absolute path."""
    if base_kind(model) == "local folder":
        return Path(os.path.expanduser(model.name)).resolve().name
    return model.name


def portable_name(model: ModelConfig) -> str:
    """The base's recorded name, with `/gguf_file` when its weights are one file inside it."""
    name = _recorded_name(model)
    return f"{name}/{model.gguf_file}" if model.gguf_file else name


def _weights_folder(model: ModelConfig) -> Path | None:
    """Where the base's weight files are on this machine (a hub id: its local hub cache, if any)."""
    source = resolve_source(model)
    if os.path.isdir(source):
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except (OSError, ValueError):  # not in the local cache: nothing here to hash
        return None


def _weight_files(folder: Path, gguf_file: str | None) -> list[Path]:
    if gguf_file:
        return [folder / gguf_file]
    for pattern in ("*.safetensors", "*.bin", "*.gguf"):
        found = sorted(folder.glob(pattern))
        if found:
            return found
    return []


_FINGERPRINTS: dict[tuple, dict[str, Any]] = {}  # per process: a trial's checkpoints hash the base once


def base_fingerprint(model: ModelConfig) -> dict[str, Any]:
    """{"sha256": hex or None, "hashed": what it covers} for the base's weights on this machine."""
    folder = _weights_folder(model)
    files = _weight_files(folder, model.gguf_file) if folder is not None else []
    if not files or not all(f.is_file() for f in files):
        return {"sha256": None, "hashed": "nothing: no weight files found on this machine"}
    key = (str(folder), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = _digest(files)
    return dict(_FINGERPRINTS[key])


def _digest(files: list[Path]) -> dict[str, Any]:
    digest = hashlib.sha256()
    names = ", ".join(f.name for f in files)
    if all(f.suffix == ".safetensors" for f in files):
        from safetensors import safe_open

        with contextlib.ExitStack() as stack:
            handles = [stack.enter_context(safe_open(str(f), framework="pt")) for f in files]
            for name, handle in sorted(((n, h) for h in handles for n in h.keys()), key=lambda nh: nh[0]):
                tensor = handle.get_tensor(name)
                digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return {"sha256": digest.hexdigest(), "hashed": f"tensors of {names}"}
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as handle:
            for chunk in iter(lambda h=handle: h.read(_CHUNK), b""):
                digest.update(chunk)
    return {"sha256": digest.hexdigest(), "hashed": f"bytes of {names}"}


# -- saving ---------------------------------------------------------------------------------------
def save_adapter(peft_model, folder: str | os.PathLike, cfg: TrialConfig, n_layers: int) -> None:
    """PEFT's files with the base named portably, then memlaw_adapter.json and README.md."""
    adapter, model = cfg.adapter, cfg.model
    name = portable_name(model)
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = name  # PEFT would write the absolute folder it loaded from
    # The base is frozen and never resized: no embedding copy, and no hub lookup of the name to check.
    peft_model.save_pretrained(str(folder), save_embedding_layers=False)
    base = {"name": _recorded_name(model), "kind": base_kind(model), "gguf_file": model.gguf_file,
            "init_range": model.init_range, "seed": model.seed, "dtype": cfg.dtype, **base_fingerprint(model)}
    meta = {"format": META_FORMAT, "placement": adapter.placement,
            "layer": paper_layer(adapter, n_layers) if adapter.placement == "paper" else None,
            "rank": adapter.rank, "base": base, "load": LOAD_LINE.format(path=PLACEHOLDER)}
    Path(folder, ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n")
    Path(folder, "README.md").write_text(_readme(meta, name))


def _readme(meta: dict[str, Any], name: str) -> str:
    base = meta["base"]
    sha = f"`{base['sha256']}` ({base['hashed']})" if base["sha256"] else f"not recorded ({base['hashed']})"
    where = {"tiny preset": "memlaw builds this tiny preset from its config and seed",
             "package": "the weights ship inside the named Python package",
             "hub id": "a Hugging Face hub id",
             "local folder": "a local folder, recorded by its name only: pass "
                             "`load_adapter(..., base=\"/path/to/" + base["name"] + "\")`"}[base["kind"]]
    plain = ("Plain `peft.PeftModel.from_pretrained(base, folder)` does not load it: its LoRA targets "
             f"`model.layers.{meta['layer']}.mlp.memory`, a zero map memlaw adds beside that block's MLP, "
             "which a plain base lacks (PEFT raises `NoMatchingPeftModuleError`)."
             if meta["placement"] == "paper" else
             "Plain PEFT loads it on the same base: `base, tokenizer = trainables.adapters.load_recorded_base("
             "folder)`, then `peft.PeftModel.from_pretrained(base, folder)`.")
    return (f"---\nlibrary_name: peft\ntags:\n- lora\n- memlaw\n---\n\n"
            f"# memlaw adapter: {meta['placement']} placement, LoRA rank {meta['rank']}\n\n"
            f"Base model: `{name}` ({where}), loaded as {base['dtype']}; weights sha256 {sha}.\n\n"
            "## Loading\n\nWith memlaw installed (this folder may be copied anywhere):\n\n"
            f"```python\n{LOAD_LINE.format(path=PLACEHOLDER)}\n```\n\n"
            "It rebuilds the base from its name, refuses a base whose weights hash differently, redoes "
            "memlaw's wrapping for the paper placement and calls `peft.PeftModel.from_pretrained`. "
            f"{plain}\n\nmemlaw's facts about this adapter are in `{ADAPTER_META}`; PEFT's in "
            "`adapter_config.json`.\n")


# -- loading --------------------------------------------------------------------------------------
def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder, ADAPTER_META)
    if not path.is_file():
        raise AdapterBaseError(f"{folder} has no {ADAPTER_META}: not a memlaw adapter folder")
    return json.loads(path.read_text())


def recorded_base(folder: str | os.PathLike, base: str | None = None) -> ModelConfig:
    """The ModelConfig of the base an adapter was trained on; `base` replaces its name (a local
    folder, which is recorded by its name only, or the same weights kept elsewhere)."""
    rec = read_meta(folder).get("base")
    if rec is None:
        raise AdapterBaseError(f"{folder}/{ADAPTER_META} records no base model (saved before memlaw "
                               "recorded it): load the base yourself and pass it as load_adapter(folder, base_model)")
    if base is None and rec["kind"] == "local folder":
        raise AdapterBaseError(f"the adapter in {folder} was trained on a local folder named {rec['name']!r}, "
                               f"recorded without its path: pass base='/path/to/{rec['name']}'")
    return ModelConfig(name=base if base is not None else rec["name"], gguf_file=rec["gguf_file"],
                       init_range=rec["init_range"], seed=rec["seed"])


def check_base(folder: str | os.PathLike, model: ModelConfig) -> None:
    """Raise AdapterBaseError unless `model`'s weights hash as the adapter's base did."""
    rec = read_meta(folder)["base"]
    if rec["sha256"] is None:
        warnings.warn(f"{folder}: no hash of the base was recorded ({rec['hashed']}); its weights are unchecked",
                      stacklevel=3)
        return
    found = base_fingerprint(model)
    if found["sha256"] != rec["sha256"]:
        raise AdapterBaseError(
            f"the adapter in {folder} was trained on {portable_name(model)!r} whose weights hash to "
            f"{rec['sha256']} ({rec['hashed']}), but the base found here ({resolve_source(model)}) hashes to "
            f"{found['sha256']} ({found['hashed']}): other weights, so the adapter would compute something "
            "else. Refusing to load; pass base=... naming the original weights")


def load_recorded_base(folder: str | os.PathLike, base: str | None = None, device: str = "cpu",
                       dtype: str | None = None):
    """(model, tokenizer): the adapter's base, its hash checked, in the trial's dtype by default."""
    model = recorded_base(folder, base)
    check_base(folder, model)
    return load_base(model, dtype or read_meta(folder)["base"]["dtype"], resolve_device(device))


def load_adapter(folder: str | os.PathLike, base_model: nn.Module | None = None, *, base: str | None = None,
                 device: str = "cpu", dtype: str | None = None, is_trainable: bool = False):
    """The PeftModel of a memlaw adapter folder (either placement).

    Without `base_model` the recorded base is loaded (`load_recorded_base`: name, hash, dtype); a
    `base_model` given is used as it is, unchecked (a loaded module's tensors are not its files).
    """
    from peft import PeftConfig, PeftModel
    from peft.tuners.lora.layer import Linear as LoraLinear

    meta = read_meta(folder)
    if base_model is None:
        base_model, _ = load_recorded_base(folder, base, device, dtype)
    config = PeftConfig.from_pretrained(str(folder))
    if meta["placement"] == "paper":
        wrap_paper_layer(base_model, meta["layer"])
        config._register_custom_module({ZeroMap: LoraLinear})
    return PeftModel.from_pretrained(base_model, str(folder), config=config, is_trainable=is_trainable)


__all__ = ["ADAPTER_META", "AdapterBaseError", "LOAD_LINE", "base_fingerprint", "check_base", "load_adapter",
           "load_recorded_base", "portable_name", "recorded_base", "save_adapter"]
