"""Test support: local servers, token factories and event builders."""
