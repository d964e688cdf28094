"""The package's version, in one place: hatch reads it at build time, and modules that
record it (the trainer's run metadata, the report's footer) import it from here rather
than the whole package."""

__version__ = "0.1.0"
