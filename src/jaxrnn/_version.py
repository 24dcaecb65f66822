"""The package's one version number: hatch reads it to build (``pyproject.toml``'s
``[tool.hatch.version]``), ``jaxrnn.__version__`` re-exports it."""

__version__ = "0.2.0"
