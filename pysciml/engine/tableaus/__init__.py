"""Tableau data for the native engine: coefficients only, one module per family, each citing its source.

- :mod:`.explicit`: explicit Runge-Kutta (Tsit5, DP5, BS3, Vern7, and the fixed-step RK4, Midpoint, Euler).
- :mod:`.rosenbrock`: Rosenbrock / Rodas methods in the transformed (Hairer-Wanner) form.
- :mod:`.ark`: additive Runge-Kutta (ESDIRK implicit + explicit pair) methods: KenCarp3/4/5, Kvaerno5.
"""
