"""Deciding what a stored message means and what follows from it."""
