"""Test infrastructure: the real tools (cosign 2.x/3.x, a distribution registry) and image pushing.

Importable as ``tests.infra``; nothing here is part of the shipped package.
"""
