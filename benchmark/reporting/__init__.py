"""Reporting: metrics, tables, leaderboard, bootstrap statistics, plots, HTML report, run folders."""
