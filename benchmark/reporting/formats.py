"""The leaderboard's export formats and their file extensions (a light module: the CLI's
argument parser reads it without importing pandas)."""

FORMATS = ("csv", "latex", "md", "json")
EXTENSIONS = {"csv": ".csv", "latex": ".tex", "md": ".md", "json": ".json"}
