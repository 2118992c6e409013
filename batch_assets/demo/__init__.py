"""The demo and the examples: generated card transactions and their model (``data``, ``training``), the
demo's Definitions (``pipeline``), the ``batch-assets demo`` command (``run``) and the hourly device
example (``device_example``). Nothing here is imported by the core."""
