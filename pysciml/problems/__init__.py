"""Standard test problems (stiff classics, PDE semi-discretizations, exact-solution problems) and references.

Every constructor returns a :class:`pysciml.ODEProblem` (or ``SplitODEProblem``) on torch tensors, takes
``dtype=torch.float64`` and ``device="cpu"`` keywords, and gives an analytic Jacobian. Reference solutions
at the classic final times: :func:`reference` (a tensor) and :func:`reference_record` (values plus how they
were computed and their estimated accuracy).
"""

from ._reference import Reference, reference, reference_record, references
from .brusselator import brusselator_1d
from .hires import hires
from .linear import linear, nonlinear_exact
from .lotka_volterra import lotka_volterra
from .rober import rober
from .vanderpol import van_der_pol

__all__ = [
    "Reference", "reference", "reference_record", "references",
    "brusselator_1d", "hires", "linear", "lotka_volterra", "nonlinear_exact", "rober", "van_der_pol",
]
