"""Model adapters as Dagster resources, one module per adapter.

Each module holds an interface (a ``ConfigurableResource`` base class the
assets depend on) and its embedded default, which needs no model weights.
"""
