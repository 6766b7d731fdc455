"""One memorization trial: freeze a causal LM, attach LoRA of rank r, train it to reproduce ℓ target
tokens verbatim, and measure what it recalls.

Pure pieces (no torch at import): schema and yaml_input (strict configs from YAML), config and
methods (the trial's config and the training methods' table), metric_names, limits, file_modes
(the umask's permissions for what is written atomically). Torch pieces:
model, adapters (saving and loading adapters, their base named portably), data, memft (MemFT's
weights), recall and certification (the metrics), information, prefix_cache, chunked_loss (the head
and the loss in chunks of target tokens), backends and memorize (the loop), resolved (the config as
it ran: config.yaml), zero (DeepSpeed ZeRO ranks), fault_drills. Never imports orchestrator
(import-linter contract "libraries" in pyproject.toml).
"""
