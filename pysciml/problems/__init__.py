"""Standard test problems (stiff classics, PDE semi-discretizations, exact-solution problems) and references.

Every constructor returns a :class:`pysciml.ODEProblem` (or ``SplitODEProblem``) on torch tensors, takes
``dtype=torch.float64`` and ``device="cpu"`` keywords, and gives an analytic Jacobian. Reference solutions
at the classic final times: :func:`reference` (a tensor) and :func:`reference_record` (values plus how they
were computed and their estimated accuracy).

Hamiltonian systems for HNN training and evaluation (analytic ``H``, exact vector fields, samplers):
:class:`HamiltonianSystem`, the registry :data:`SYSTEMS`, :func:`hamiltonian_system` and :func:`trajectories`
(module :mod:`pysciml.problems.hamiltonian`); their states are ``(q, p)`` tensors, not ``ODEProblem``s.

Multiscale systems and seeded trajectory data sets for learned time-steppers (:mod:`pysciml.problems.multiscale`):
:func:`kuramoto_sivashinsky`, :func:`fitzhugh_nagumo_lattice`, :func:`ks_dataset`, :func:`fhn_dataset`,
:func:`save_dataset`, :func:`load_dataset`.

An index-1 DAE with a singular, non-diagonal mass matrix (:mod:`pysciml.problems.transistor`):
:func:`transistor_amplifier` (the Bari test set's transistor amplifier, 8 node voltages).

Two-species reaction-diffusion on ``N x N`` periodic grids with analytic sparse Jacobians (torch sparse CSR) and
``jac_prototype`` (:mod:`pysciml.problems.pde2d`): :func:`brusselator_2d` (SciML's 2-D Brusselator),
:func:`gray_scott_2d`.
"""

from ._reference import Reference, reference, reference_record, references
from .brusselator import brusselator_1d
from .hamiltonian import SYSTEMS, HamiltonianSystem, hamiltonian_system, trajectories
from .hires import hires
from .linear import linear, nonlinear_exact
from .lotka_volterra import lotka_volterra
from .multiscale import (
    fhn_dataset,
    fitzhugh_nagumo_lattice,
    ks_dataset,
    ks_operators,
    kuramoto_sivashinsky,
    load_dataset,
    save_dataset,
)
from .oregonator import oregonator
from .pde2d import brusselator_2d, gray_scott_2d
from .rober import rober
from .transistor import TRANSISTOR_PARAMS, transistor_amplifier
from .vanderpol import van_der_pol

__all__ = [
    "Reference", "reference", "reference_record", "references",
    "HamiltonianSystem", "SYSTEMS", "hamiltonian_system", "trajectories",
    "brusselator_1d", "hires", "linear", "lotka_volterra", "nonlinear_exact", "oregonator", "rober", "van_der_pol",
    "transistor_amplifier", "TRANSISTOR_PARAMS",
    "fhn_dataset", "fitzhugh_nagumo_lattice", "ks_dataset", "ks_operators", "kuramoto_sivashinsky",
    "load_dataset", "save_dataset", "brusselator_2d", "gray_scott_2d",
]
