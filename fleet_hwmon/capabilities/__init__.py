"""Hardware capability detection: what a worker can run, as opposed to how busy it is.

``model`` (records and enums), ``cpu``, ``gpu`` (NVIDIA through the NVML gateway),
``accelerators`` (AMD/Intel GPUs, TPUs, NPUs, Apple silicon), ``web`` (WebGPU/WebNN from the
browser probe in ``browser``), ``fingerprint``, ``matching`` (requirements and the coordinator
view, pure) and ``storage`` (DuckDB). ``hardware_capability_detector`` composes them.
"""
