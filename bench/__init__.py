"""ticketbench's mechanism, shared by every task; it never imports tasks/ (adapters register
themselves through the `ticketbench.tasks` entry points).

Subpackages, roughly lowest first (util/ imports no other; cli/ alone may import any; no
module imports one that imports it back, tests/test_layout.py checks it):
  util/    errors, registry, lazy imports, atomic io, fingerprints, paths, environment, faults
  models/  ResNets with one SAM slot per block, the SAM registry, masking and materializing
  ticket/  ticket files: schema, load/validate/save, checksum, description
  data/    image-classification readers, transforms, batch augmentation, held-out split
  engine/  hparams, run directories, checkpoints, schedules, torchrun, the train loop
  cost/    FLOP rules, counts, the interleaved-round timer, latency sessions and their store
  search/  supernet training, candidate scoring, strategies, the searched ticket
  runs/    the one run-and-score path, records, pretrained inits, the task contract
  cli/     the `bench` command line: argument types, catalog of names, plugins, logging
           set-up, commands
"""
