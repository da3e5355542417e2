"""Rendering and delivering the mail the bot sends."""
