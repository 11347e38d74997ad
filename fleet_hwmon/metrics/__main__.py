"""``python -m fleet_hwmon.metrics``: print the exposed metrics as the README's Markdown list."""

from fleet_hwmon.metrics.catalogue import markdown_list

print(markdown_list())
