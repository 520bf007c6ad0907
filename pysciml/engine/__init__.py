"""The native engine: everything below :func:`pysciml.native.solve_native`, in torch.

- ``loop.py`` / ``loop_scalar.py``: the integration loops (batched tensors / one trajectory on floats), with
  their shared records and rules in ``loop_records.py``, fixed-step stability checks in ``fixed_step_check.py``
  and the progress bar in ``progress.py``;
- ``stepper.py``: the stepper protocol; ``explicit_rk.py``, ``rosenbrock.py``, ``ark.py``: one stepper per
  method family, summing stages through ``stages.py``; ``tableaus/``: their coefficients, as cited data;
- ``rhs.py`` (f, Jacobians, JVPs, df/dt, counters and checks; ``graph_check.py``), ``linsolve.py`` (dense LU,
  GMRES), ``controller.py`` (error norm, PI control, initial step), ``interpolation.py`` (dense output);
- ``compiled.py``: ``compile=True``, a stepper's whole step as one cached ``torch.compile`` program.

Nothing here imports the public API above it (``pysciml.solve``, ``pysciml.sensitivity``).
"""
