"""Continuous-integration tooling: the test runner's recorder, CI artifacts, badges and notifications.

Layers, one way: ``results_db`` (DuckDB tables ``test_runs`` / ``test_results``) and ``report``
(a run's outcome read from JUnit XML, a summary JSON or the results database) are the data;
``recorder`` (a pytest plugin), ``runner``, ``artifacts``, ``badges``, ``status`` and ``notify``
build on them. The top-level scripts ``run_hardware_monitoring_tests.py``,
``generate_status_badge.py`` and ``ci_notification.py`` only parse arguments and compose these.
"""
