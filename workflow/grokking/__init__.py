"""Grokking phase diagrams: vectorized ensemble training and phase classification.

The Snakemake workflow calls this package through its command line (``python -m grokking``);
the modules are small and have one job each:

- ``config``   validate the workflow config against the JSON schema, fill defaults
- ``grid``     expand a study's axes into cells and shards
- ``data``     the toy addition dataset, built exactly as the report's public code does
- ``models``   reference ``nn.Module`` models (the ground truth the engine is tested against)
- ``ensemble`` stacked parameters of many models and their batched forward pass
- ``stacked``  any ``nn.Module`` trained as a stacked ensemble (torch.func), no hand-written backward
- ``optim``    batched AdamW, Adam, SGD with per-member learning rate and weight decay, warm-up
- ``trainer``  what every task's shard trainer shares: members, thresholds, early stopping,
               compaction, divergence, end state and continuation, the metrics table
- ``tasks``    one module per task (config checks, data, training) and its trainer
               (``tasks.toy_trainer``, ``tasks.mnist_trainer``)
- ``mnist``    MNIST data and model
- ``reference``, ``mnist_reference``  plain one-model loops the engines are tested against
- ``phases``   the phase rule (comprehension, grokking, memorization, confusion)
- ``plots``, ``appendix_plots``, ``robustness``  figures; ``claims`` the claims summary
- ``io``       atomic writes
- ``cli``      the verbs the rules run
"""

__version__ = "0.1.0"
