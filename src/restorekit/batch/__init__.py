"""Restoring many files: shards for several processes or machines, a bounded decode/restore/encode
loop that batches same-size images, and the run's JSON report.

- ``shard``: which inputs a process takes (torchrun variables or ``--shard K/N``), device, threads;
- ``prefetch``: bounded reader and writer threads;
- ``engine``: the per-shard loop over planned jobs;
- ``driver``: one process's run: progress, shard report, barrier and merge, exit code;
- ``report``: per-shard JSON reports and their merge (``restorekit report merge``).

Submodules are imported where used, so ``restorekit report`` does not load PyTorch.
"""
