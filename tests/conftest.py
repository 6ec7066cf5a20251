"""Shared test set-up. Lab tests (marker ``lab``) share one lab per test session."""
