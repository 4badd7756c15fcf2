"""The measurements of ``benchmarks/train_step.py`` (its harness): models,
batches, variants and their timing loop, memory, pixel-contrast sizes,
breakdown. Imported with ``benchmarks/`` on ``sys.path`` (for
``_common``), as the harness does."""
