"""The sweep file: what it may say, validated completely before Ray starts.

    sweep          SweepConfig and its sections (resources, fit), the one construction path
    cluster_file   trial resources against a cluster launcher file's node types
    preflight      what needs this machine (the base model's shape, writable storage) and
                   load_sweep, which adds it to the sweep's own problems

sweep.py imports search (its search kinds check their part of the file) and records (storage
URIs); preflight is the one module here that may import torch, lazily, to check a model.
"""
