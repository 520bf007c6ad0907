"""Imported first by ``pysciml/__init__.py``: starts Julia before torch when ``PYSCIML_JULIA_EAGER`` is set.

For users hit by the torch/juliacall import-order crashes (PythonCall.jl issues 215, 384, 435), see
``docs/julia.md``. Standard library only; without the variable this does nothing.
"""

from ._startup import maybe_start_eagerly

maybe_start_eagerly()
