"""Typed settings: environment variables and an optional TOML file, validated at start-up."""

from config.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
