"""The course: its sections, and the hardened state of each (see hardening.py)."""
