"""Hardware monitoring of a distributed test framework's workers (see the README)."""

from fleet_hwmon.printable import clean_log_records

clean_log_records()  # names from other machines reach our log lines without control characters
