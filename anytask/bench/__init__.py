"""The benchmark harness: ``anytask bench run`` and ``anytask brokers``.

Modules, one concern each: :mod:`stamps` (per-process stamp files), :mod:`work` (the workload
bodies), :mod:`tasks` (facade tasks), :mod:`native` (each library's own API), :mod:`scenarios`
(the TOML scenario files), :mod:`targets` (backends, URLs, declared slots), :mod:`metrics` (pure
computations), :mod:`runner` (the phases of one measurement), :mod:`results` (run.json),
:mod:`ceilings`, :mod:`resources`, :mod:`environment`, :mod:`brokers`, :mod:`display`, :mod:`cli`.
Nothing here is imported by ``anytask worker`` except :mod:`stamps`, :mod:`work` and :mod:`tasks`.
"""
