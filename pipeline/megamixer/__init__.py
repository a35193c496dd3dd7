"""megamixer: chunked runs of many tiles (the ``megamixit`` tool).

Modules: ``runconfig`` (schema, loading), ``tiles`` (tiles file), ``chunks``
(FoF-group ranges), ``layout`` (where files live, portable paths),
``tilerecord`` (per-tile chunk list), ``jobs`` (chunk jobs for the adapters in
``systems``), ``setup``, ``run``, ``status``, ``collate``, ``verify``, ``link``,
``archive`` (also clean), ``commands`` (CLI glue).
"""
