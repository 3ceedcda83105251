"""Integrations of hintpool with other frameworks, each behind an extra."""
