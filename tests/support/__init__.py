"""Fakes and fixtures shared by unit and integration tests (no tests here)."""
