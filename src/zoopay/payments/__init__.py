"""Payments: billing information, payment methods, tax readiness, usage thresholds."""
