"""Tests of prognos.monitoring."""
