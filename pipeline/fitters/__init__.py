"""Fitters registered by name (``fitter_type``): ``max``, ``metacal`` and ``mof``.

:func:`pipeline.fitters.base.get_fitter` builds the one a fit config names.
"""
