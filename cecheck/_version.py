"""cecheck's version, in a module of its own: read by the build (pyproject.toml) and by the
modules that print it, without importing the package's API."""

__version__ = "0.1.0"
