"""The web console (README "Web console"): pages served by the admin API under ``/ui``."""
