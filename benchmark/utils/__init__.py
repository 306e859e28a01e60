"""Shared utilities every layer may use: errors, atomic writes, progress/logging, device, registry base, names."""
