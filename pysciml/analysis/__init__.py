"""Analysis of the tableau data: Butcher rooted-tree order conditions (explicit, additive, Rosenbrock)."""
