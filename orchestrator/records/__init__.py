"""What a trial measured and how it is kept: the trial record, its journal, the storage under it.

    trial_record   TrialRecord, its statuses and config hash, flattening of configs
    identity       one record per configuration: repeats counted once, conflicts named
    journal        the append-only record journal of an experiment, its snapshot and damage report
    storage_failure  a full, read-only or forbidden disk told apart from other errors; the space reserve
    storage        local paths and object-store URIs behind one small Store, atomic writes

The bottom layer with law: imports only trainables' pure modules (metric names, schema, file modes).
"""
