"""Grokking phase diagrams: vectorized ensemble training and phase classification.

The Snakemake workflow calls this package through its command line (``python -m grokking``);
the modules are small and have one job each:

- ``config``   validate the workflow config against the JSON schema, fill defaults
- ``grid``     expand a study's axes into cells and shards
- ``data``     the toy addition dataset, built exactly as the report's public code does
- ``models``   reference ``nn.Module`` models (the ground truth the engine is tested against)
- ``ensemble`` stacked parameters of many models and their batched forward pass
- ``optim``    a batched AdamW with per-member learning rate and weight decay
- ``engine``   the training loop: thresholds, early stopping, compaction, divergence, end state
- ``mnist``, ``mnist_engine``  MNIST data, model and its training loop (shared minibatches)
- ``reference``, ``mnist_reference``  plain one-model loops the engines are tested against
- ``phases``   the phase rule (comprehension, grokking, memorization, confusion)
- ``plots``, ``appendix_plots``, ``robustness``  figures; ``claims`` the claims summary
- ``io``       atomic writes
- ``cli``      the verbs the rules run
"""

__version__ = "0.1.0"
